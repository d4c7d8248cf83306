"""``avatarstudio personalize``: choose keyframes of a reconstruction and personalise the diffusion model on them.

A thin layer: it loads the recon run with nerfstudio's ``eval_setup`` (as ``ns-viewer`` does), takes the keyframes
and their images with the same functions the edit uses, and hands them to
:func:`~avatarstudio_ns.guidance.personalization.finetune.personalize`. The same settings therefore give the same
cache key, and
``ns-train avatarstudio-edit --pipeline.guidance.personalization-dir <output>`` reuses the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from avatarstudio_ns.data.keyframes import (
    Keyframe,
    KeyframeSelectionConfig,
    avatar_keyframes,
    keyframe_background,
    keyframe_foregrounds,
    keyframe_image_index,
    keyframe_images,
)
from avatarstudio_ns.guidance.loading import DEFAULT_BASE_MODEL, load_diffusion
from avatarstudio_ns.guidance.personalization.finetune import PersonalizeConfig, personalize


def keyframe_renders(pipeline, keyframes: List[Keyframe]) -> List[Float[Tensor, "3 h w"]]:
    """The recon's renders of the keyframes (an alternative to the captured images)."""
    dataset = pipeline.datamanager.train_dataset
    images = []
    with torch.no_grad():
        for keyframe in keyframes:
            index = keyframe_image_index(dataset, keyframe)
            rgb = pipeline.model.get_outputs_for_camera(dataset.cameras[index : index + 1].to(pipeline.device))["rgb"]
            images.append(rgb.clamp(0, 1).permute(2, 0, 1).float().cpu())
    return images


@dataclass
class PersonalizeCommand:
    """Personalise a diffusion model on the keyframes of a reconstructed avatar (METHOD sections 2-3)."""

    load_config: Path
    """The recon run's config.yml (outputs/.../avatarstudio-recon/<timestamp>/config.yml)."""
    output: Path = Path("outputs/personalization")
    """Personalisation folder (weights, keyframes.json, personalization.json); reruns resume or reuse it. Pass it
    to the edit as --pipeline.guidance.personalization."""
    base_model: str = DEFAULT_BASE_MODEL
    """Base diffusion model: a Hugging Face id, a local diffusers folder, or builtin."""
    load_step: Optional[int] = None
    """Recon checkpoint step whose per-frame codes choose the keyframes; default: the newest."""
    keyframes: KeyframeSelectionConfig = field(default_factory=KeyframeSelectionConfig)
    """Which (camera, time) pairs are keyframes (the edit's --pipeline.keyframes options)."""
    personalization: PersonalizeConfig = field(default_factory=PersonalizeConfig)
    """Fine-tuning settings (the edit's --pipeline.personalization options)."""
    image_source: Literal["captured", "render"] = "captured"
    """Train on captured images masked onto the backdrop (what the edit does), or on the recon's renders."""
    device: str = "auto"
    """cuda, cpu, or auto (cuda when available)."""
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Compute dtype of the frozen model; auto: fp16 on CUDA, fp32 on the CPU."""

    def main(self) -> None:
        """Select keyframes, load the base model, fine-tune, and write the personalisation folder."""
        # heavy (eval_utils imports every method config of nerfstudio's registry, ~3 s): imported when the command
        # runs, so --help stays fast
        from nerfstudio.utils.eval_utils import eval_setup

        def set_step(config):
            config.load_step = self.load_step
            return config

        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="inference", update_config_callback=set_step)
        datamanager = pipeline.datamanager
        keyframes = avatar_keyframes(
            pipeline.model.get_frame_embeddings(), datamanager.train_dataset, datamanager.eval_dataset, self.keyframes
        )
        CONSOLE.print(
            f"{len(keyframes)} keyframes: " + ", ".join(f"cam {k.camera_index} t {k.timestep_index}" for k in keyframes)
        )
        if self.image_source == "render":
            images = keyframe_renders(pipeline, keyframes)
        else:
            images = keyframe_images(datamanager.train_dataset, keyframes)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        base = load_diffusion(self.base_model, device, dtype=None if self.dtype == "auto" else self.dtype)
        # Framed on the capture's masks, as the edit frames them (its renders of these views share the silhouette).
        dataset = datamanager.train_dataset
        foregrounds, background = keyframe_foregrounds(dataset, keyframes), keyframe_background(dataset)
        result = personalize(
            keyframes, images, base, self.personalization, self.output, foregrounds=foregrounds, background=background
        )
        state = "reused" if result.reused else f"trained ({len(result.losses)} steps)"
        CONSOLE.print(f"Personalisation {state}: {result.folder}")
