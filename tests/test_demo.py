"""``avatarstudio demo`` end to end at toy sizes: every output is written, and a rerun reuses only what matches."""

from __future__ import annotations

import json

import pytest

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.scripts.demo import DemoConfig, run_demo
from method_configs.edit import avatarstudio_edit_fast


def _checkpoints(folder):
    """Checkpoint files and when they were written (a retrained run rewrites the same names)."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("step-*.ckpt"))


def test_demo_writes_its_outputs_and_a_new_prompt_gets_its_own_edit(tmp_path):
    model = write_small_model(tmp_path / "tiny", SmallModelConfig.tiny())
    config = DemoConfig(
        output=tmp_path / "demo",
        base_model=str(model),
        num_cameras=4,
        num_frames=2,
        resolution=32,
        recon_steps=6,
        edit_steps=2,
        personalization_steps=2,
    )
    report = run_demo(config)
    root = config.output
    for name in ("grid.png", "side_by_side.mp4", "side_by_side.gif", "scores.json", "scores.md", "demo.json"):
        assert (root / name).stat().st_size > 0, name
    default_prompt = avatarstudio_edit_fast.config.pipeline.model.prompt  # the demo's prompt is the preset's
    assert report["edits"][0]["prompt"] == default_prompt
    summary = json.loads((root / "summary.json").read_text())
    first_edit = summary["edit"]
    recon = root / "runs" / "avatar" / "avatarstudio-recon-cpu"
    recon_checkpoints = _checkpoints(recon)

    # Another prompt (one the prompt set does not measure): the avatar is reused, the edit is new, no scores.
    config.prompt = "photo of a person with a hat"
    assert run_demo(config) == {}
    summary = json.loads((root / "summary.json").read_text())
    assert summary["edit"] != first_edit and _checkpoints(recon) == recon_checkpoints
    assert not (root / "scores.json").exists() and not (root / "scores.md").exists()  # the old prompt's

    # The first prompt again: its finished edit is found and reused, not trained again.
    edits = root / "runs" / "avatar" / "avatarstudio-edit-fast"
    edit_checkpoints = _checkpoints(edits)
    config.prompt = None
    assert run_demo(config)["edits"][0]["prompt"] == default_prompt
    assert json.loads((root / "summary.json").read_text())["edit"] == first_edit
    assert _checkpoints(edits) == edit_checkpoints

    # A new version of the base model in the same place (as when the built-in model is retrained): the avatar is
    # reused, the edit and its personalisation are made anew instead of the old model's being taken (or refused).
    write_small_model(model, SmallModelConfig.tiny(), seed=1)
    run_demo(config)
    assert json.loads((root / "summary.json").read_text())["edit"] != first_edit
    assert _checkpoints(recon) == recon_checkpoints
    assert len(list(root.glob("personalization-*"))) == 2

    # A different capture in the same folder would silently reuse the old avatar: refused, naming the fix.
    config.num_frames = 3
    with pytest.raises(ValueError, match="another --output"):
        run_demo(config)
    config.num_frames = 2
    config.height = 40  # a portrait capture of the same rig is another capture too
    with pytest.raises(ValueError, match=r"another --output.*|height: None -> 40"):
        run_demo(config)
