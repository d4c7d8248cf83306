"""Captures as other tools write them, and non-square ones, through the whole pipeline: recon, edit, ns-render."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EDIT_STEPS, quiet_config, tiny_edit_config, tiny_recon, train
from fixtures.vhap_capture import write_vhap_combined_capture
from nerfstudio.scripts.render import DatasetRender
from nerfstudio.utils.eval_utils import eval_setup
from PIL import Image

from avatarstudio_ns.data.synth import CaptureConfig, render_capture


def _portrait_synth(folder: Path) -> Path:
    """A 3:4 synthetic capture (NeRSemble's exports are portrait, 550 x 802): 24 x 32 px, 6 cameras, 2 frames."""
    config = CaptureConfig(output=folder, num_cameras=6, num_frames=2, width=24, height=32, progress=False)
    return render_capture(config)


def _vhap_combined(folder: Path) -> Path:
    """VHAP's combination of two sequences: ``../<sequence>/`` frame paths, no timestep ids, per-frame angles; its
    test split is the second sequence, whose timesteps training never sees."""
    return write_vhap_combined_capture(folder, num_timesteps=2)


@pytest.mark.parametrize("make_capture", [_vhap_combined, _portrait_synth], ids=["vhap-combined", "portrait-synth"])
def test_a_capture_goes_through_recon_edit_and_ns_render(make_capture, tiny_model, tmp_path):
    capture = make_capture(tmp_path / "capture")
    recon = tiny_recon(capture, tmp_path / "recon", steps=30)

    config = tiny_edit_config(capture, tiny_model, tmp_path / "personal")
    config.load_dir = recon.get_base_dir() / "nerfstudio_models"
    quiet_config(config, tmp_path / "edit", EDIT_STEPS)
    torch.manual_seed(0)
    trainer = train(config)
    assert trainer.pipeline.personalization_reused is False  # personalised on this capture's own keyframes

    # ns-render of every test image (for the combined export: the second sequence, unseen in training), at the
    # capture's own size.
    edit_config = config.get_base_dir() / "config.yml"
    DatasetRender(load_config=edit_config, output_path=tmp_path / "renders", split="test", image_format="png").main()
    renders = sorted((tmp_path / "renders" / "test" / "rgb").glob("*.png"))
    _, pipeline, _, _ = eval_setup(edit_config, test_mode="test")
    dataset = pipeline.datamanager.eval_dataset
    assert len(renders) == len(dataset)
    height, width = int(dataset.cameras.height[0, 0]), int(dataset.cameras.width[0, 0])
    image = np.asarray(Image.open(renders[0]).convert("RGB"), dtype=np.float32)
    assert image.shape == (height, width, 3)
    assert image.std() > 1.0, "a blank render"
