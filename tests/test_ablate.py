"""``avatarstudio ablate`` and the image-editing baseline it compares against, on a tiny avatar and diffusion model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.eval.evaluate import EvalSettings
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, PromptSet, save_prompt_set
from avatarstudio_ns.guidance.dataset_update import DatasetUpdateGuidance, DatasetUpdateGuidanceConfig
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.scripts.ablate import METHODS, AblationConfig, ablation_markdown, run_ablation


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())


def test_dataset_update_edits_one_target_every_n_steps_and_fits_the_rest(tiny_model):
    base = load_diffusion(str(tiny_model), "cpu")
    originals = [torch.full((3, 16, 16), 0.25), torch.full((3, 16, 16), 0.75)]
    guidance = DatasetUpdateGuidance(
        DatasetUpdateGuidanceConfig(prompt="photo of a person with blue hair", update_every=2, num_inference_steps=4),
        originals,
        base=base,
    )
    render = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    first = guidance(render, [0], step=0, total_steps=4)
    assert first["updated"] == 1 and guidance.edited == [True, False]
    edited = guidance.targets[0]
    assert edited.shape == (3, 16, 16) and 0 <= edited.min() and edited.max() <= 1
    assert not torch.allclose(edited, originals[0])  # the target is now an SDEdit of the render
    first["loss_image"].backward()
    assert render.grad is not None and torch.count_nonzero(render.grad) > 0

    second = guidance(render, [1], step=1, total_steps=4)  # not an update step: fit the captured image
    assert second["updated"] == 0 and guidance.edited == [True, False]
    assert torch.isclose(second["loss_image"], torch.tensor(0.0625))  # (0.5 - 0.75)^2
    assert guidance(render, [1], step=2, total_steps=4)["updated"] == 1 and guidance.edited == [True, True]

    wide = torch.rand(3, 16, 24)
    head = torch.zeros(16, 24)
    head[2:14, 1:9] = 1.0
    edited = guidance.edit_image(wide, head)  # a non-square image: the square on its head is edited and pasted back
    assert edited.shape == wide.shape
    assert torch.equal(edited[:, :, 16:], wide[:, :, 16:])  # the square: the image's height, from column 0
    assert not torch.equal(edited[:, :, :16], wide[:, :, :16])


def test_ablation_table_marks_the_best_method_even_when_it_is_not_ours():
    def scores(psnr, hit, flicker):
        return {
            "identity": {"psnr": psnr, "ssim": 0.9},
            "fidelity": {"hit_fraction_after": hit, "delta_e_after": 10.0},
            "temporal": {"target": {"time_flicker": flicker, "view_flicker": flicker}},
        }

    from avatarstudio_ns.scripts.ablate import ablation_rows

    rows = ablation_rows({"blue hair": {"vt-sds": scores(20.0, 0.5, 0.01), "sds": scores(30.0, 0.2, 0.02)}})
    table = ablation_markdown(rows)
    ours = next(line for line in table.splitlines() if "VT-SDS (ours)" in line)
    sds = next(line for line in table.splitlines() if "| SDS |" in line)
    assert "**30.00**" in sds and "20.00" in ours and "**20.00**" not in ours  # SDS preserves identity better here
    assert "**0.50**" in ours and "**0.0100**" in ours


def test_ablate_runs_every_method_on_the_same_avatar_and_reuses_finished_runs(
    recon, tiny_model, tmp_path, tiny_edit_preset
):
    _, recon_config = recon
    # ablate copies the preset, shrunk by tiny_edit_preset, for every method.
    prompts = save_prompt_set(
        PromptSet(prompts=(DEFAULT_PROMPT_SET.find("photo of a person with blue hair"),)), tmp_path / "prompts.yaml"
    )
    config = AblationConfig(
        recon=recon_config.get_base_dir() / "config.yml",
        prompts=prompts,
        output=tmp_path / "ablation",
        methods=("vt-sds", "sds", "no-time-stamps", "no-pretrained", "dataset-update"),
        base_model=str(tiny_model),
        steps=2,
        video_frames=2,
        settings=EvalSettings(num_train_cameras=1, timestep_stride=2, clip_model=None),
    )
    summary = run_ablation(config)

    rows = summary["rows"]["photo of a person with blue hair"]
    assert [r["method"] for r in rows] == list(config.methods)
    assert all(isinstance(r["psnr"], float) for r in rows)
    table = (config.output / "ablation.md").read_text()
    for name in config.methods:
        assert f"| {METHODS[name].label} |" in table
    assert (config.output / "photo-of-a-person-with-blue-hair.mp4").stat().st_size > 0
    json.loads((config.output / "ablation.json").read_text())

    runs = config.output / "runs" / "photo-of-a-person-with-blue-hair" / "avatarstudio-edit-fast"

    def run_config(name):
        return yaml.load((runs / name / "config.yml").read_text(), Loader=yaml.Loader)

    # Each method is its switch and nothing else.
    assert run_config("no-time-stamps").pipeline.keyframes.time_aware is False
    assert run_config("sds").pipeline.guidance.use_personalized is False
    pretrained = run_config("no-pretrained").pipeline.guidance
    assert (pretrained.v_high, pretrained.k_timestep) == (0.0, 0)
    assert type(run_config("dataset-update").pipeline).__name__ == "DatasetUpdatePipelineConfig"
    ours = run_config("vt-sds")
    no_pretrained = run_config("no-pretrained")
    assert ours.pipeline.guidance.personalization_dir == no_pretrained.pipeline.guidance.personalization_dir
    assert sorted(p.name for p in (config.output / "personalizations").iterdir()) == ["keyframes", "no-time-stamps"]

    checkpoints = sorted(runs.glob("*/nerfstudio_models/*.ckpt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    run_ablation(AblationConfig(**{**config.__dict__, "train_only": True}))
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps  # finished runs are reused, not retrained
    with pytest.raises(ValueError, match="other settings"):  # a run is never reused under other settings
        run_ablation(AblationConfig(**{**config.__dict__, "train_only": True, "steps": 3}))
