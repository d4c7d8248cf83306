"""``avatarstudio suite``: identities x prompts with one default edit, scored per checkpoint, on tiny sizes."""

from __future__ import annotations

import json

import pytest

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.eval.evaluate import EvalSettings
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, PromptSet, save_prompt_set
from avatarstudio_ns.scripts import suite as S
from method_configs.recon import avatarstudio_recon_cpu


def _scores(psnr: float, hit: float) -> dict:
    return {
        "identity": {"psnr": psnr, "ssim": 0.9},
        "fidelity": {"hit_fraction_after": hit, "delta_e_after": 10.0},
        "temporal": {"target": {"time_flicker": 0.01, "view_flicker": 0.02}},
        "region_iou": 0.8,
    }


def test_steps_to_target_is_the_first_checkpoint_that_meets_both_targets():
    scores = {99: _scores(35.0, 0.5), 199: _scores(29.0, 0.95), 299: _scores(31.0, 0.92)}
    row = S.suite_row(scores)
    assert row["steps_to_target"] == 300  # 200 reaches the colour but not the identity
    assert row["psnr"] == 31.0 and row["hit"] == 0.92  # the table shows the last checkpoint
    assert S.suite_row({99: _scores(35.0, 0.5)})["steps_to_target"] is None

    rows = [
        {"identity": "a", "prompt": "photo of a person with blue hair", "seconds": 10.0, **row},
        {
            "identity": "b",
            "prompt": "photo of a person with dark skin",
            "seconds": 30.0,
            **S.suite_row({9: _scores(25.0, 0.4)}),
        },
    ]
    table = S.suite_markdown(rows)
    worst = next(line for line in table.splitlines() if line.startswith("| **worst**"))
    assert "| 25.00 |" in worst and "| 0.40 |" in worst and "| 30 |" in worst
    assert "1/2 reached" in table and "not reached" in table


def test_a_prompt_is_not_asked_of_an_identity_that_already_has_it():
    blue = DEFAULT_PROMPT_SET.find("photo of a person with blue hair")
    assert not S.applies(blue, S.SUITE_IDENTITIES["blue-long-tan"])
    assert S.applies(blue, S.SUITE_IDENTITIES["brown-short-light"])
    # Every identity of the suite differs from the others in hair colour, skin tone and hair style.
    attributes = [S._capture_config(i, S.Path("."), S.SuiteConfig()).attributes() for i in S.SUITE_IDENTITIES.values()]
    for key in ("hair_color", "skin_tone", "hair_style"):
        assert len({getattr(a, key) for a in attributes}) == len(attributes), key


@pytest.fixture
def tiny_suite(tmp_path, monkeypatch, tiny_edit_preset):
    """A SuiteConfig of tiny captures, runs and views, editing with blue hair and dark skin; call it with the
    identities and edit steps."""
    model = write_small_model(tmp_path / "tiny", SmallModelConfig.tiny())
    monkeypatch.setattr(avatarstudio_recon_cpu.config.pipeline.datamanager, "train_num_rays_per_batch", 256)
    monkeypatch.setattr(tiny_edit_preset.region, "num_noises", 1)
    prompts = save_prompt_set(
        PromptSet(
            prompts=tuple(DEFAULT_PROMPT_SET.find(f"photo of a person with {p}") for p in ("blue hair", "dark skin"))
        ),
        tmp_path / "prompts.yaml",
    )

    def make(identities: tuple[str, ...], edit_steps: int) -> S.SuiteConfig:
        return S.SuiteConfig(
            output=tmp_path / "suite",
            identities=identities,
            prompts=prompts,
            base_model=str(model),
            num_cameras=6,
            num_frames=3,
            resolution=32,
            recon_steps=10,
            edit_steps=edit_steps,
            checkpoint_every=1,
            settings=EvalSettings(num_train_cameras=1, timestep_stride=2, clip_model=None),
        )

    return make


def test_an_interrupted_suite_keeps_the_scores_of_every_edit_it_finished(monkeypatch, tiny_suite):
    config = tiny_suite(("brown-short-light",), edit_steps=2)
    train_run = S.train_run

    def killed_at_the_second_edit(**kwargs):
        if kwargs["name"] == "photo-of-a-person-with-dark-skin":
            raise KeyboardInterrupt
        return train_run(**kwargs)

    monkeypatch.setattr(S, "train_run", killed_at_the_second_edit)
    with pytest.raises(KeyboardInterrupt):
        S.run_suite(config)
    runs = config.output / "runs" / "brown-short-light" / "avatarstudio-edit-fast"
    assert S.scored_through(runs / "photo-of-a-person-with-blue-hair", 2, config.settings)


def test_suite_makes_avatars_edits_them_scores_every_checkpoint_and_reuses_everything(monkeypatch, tiny_suite):
    config = tiny_suite(("brown-short-light", "blue-long-tan"), edit_steps=3)
    summary = S.run_suite(config)

    rows = summary["rows"]
    # The blue-haired identity is not asked for blue hair.
    assert [(r["identity"], r["prompt"][len("photo of a person with ") :]) for r in rows] == [
        ("brown-short-light", "blue hair"),
        ("brown-short-light", "dark skin"),
        ("blue-long-tan", "dark skin"),
    ]
    for row in rows:
        assert list(row["per_step"]) == ["2", "3"]  # checkpoints after 2 and 3 steps, both scored
        assert isinstance(row["psnr"], float) and row["seconds"] > 0
        assert row["exact_time_flicker"] >= 0 and row["exact_view_flicker"] >= 0  # the floor, from the synth
    table = (config.output / "suite.md").read_text()
    assert "| **mean** |" in table and "| **worst** |" in table
    json.loads((config.output / "suite.json").read_text())

    checkpoints = sorted((config.output / "runs").glob("*/*/*/nerfstudio_models/*.ckpt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]

    def no_scoring(*args, **kwargs):
        raise AssertionError("cached scores are measured again")

    monkeypatch.setattr(S, "evaluate", no_scoring)
    again = S.run_suite(config)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps  # nothing retrained
    assert [r["psnr"] for r in again["rows"]] == [r["psnr"] for r in rows]
    other_views = EvalSettings(num_train_cameras=1, timestep_stride=1, clip_model=None)
    with pytest.raises(AssertionError, match="measured again"):  # scores made with other settings are not reused
        S.run_suite(S.SuiteConfig(**{**config.__dict__, "settings": other_views}))
    with pytest.raises(ValueError, match="other settings"):  # runs are never reused under other settings
        S.run_suite(S.SuiteConfig(**{**config.__dict__, "edit_steps": 4}))
    # Nor after a change of what an edit does that its settings do not show (a fixed defect).
    with monkeypatch.context() as patch, pytest.raises(ValueError, match="edit_behaviour"):
        patch.setattr(S, "EDIT_BEHAVIOUR", S.EDIT_BEHAVIOUR + 1)
        S.run_suite(config)

    # Only the scores kept (the suite's JSON files, e.g. from a repository): nothing is trained or measured again.
    for checkpoint in checkpoints:
        if "recon" not in checkpoint.parts:
            checkpoint.unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("a scored run is trained again")

    monkeypatch.setattr(S, "train_run", no_training)
    kept = S.run_suite(config)
    assert [r["psnr"] for r in kept["rows"]] == [r["psnr"] for r in rows]

    # A new version of the base model under the same name (the built-in model retrained): its runs are not these.
    write_small_model(S.Path(config.base_model), SmallModelConfig.tiny(), seed=1)
    with pytest.raises(ValueError, match="base_weights"):
        S.run_suite(config)


def test_the_kept_suite_results_were_made_with_todays_settings():
    """benchmarks/results/edit_suite carries finished edits' scores to the next machine; they are reused only while
    their recorded settings digest matches, so a change that alters it (a renamed option included) would silently
    throw away hours of runs. A change of what an edit does must raise EDIT_BEHAVIOUR and move those results aside."""
    kept = S.Path(__file__).parents[1] / "benchmarks" / "results" / "edit_suite"
    config = S.SuiteConfig()
    shipped = S.base_model_weights(config.base_model)
    prompts = {S.slug(p.prompt): p.prompt for p in S.SUITE_PROMPTS.prompts}
    records = sorted((kept / "runs").glob("*/*/*/suite_settings.json"))
    for capture in sorted((kept / "captures").glob("*.json")):
        recorded = json.loads(capture.read_text())
        digest = S.settings_digest(avatarstudio_recon_cpu.config, recorded["recon_steps"])
        assert digest == recorded["recon_settings"], capture
    if not records:
        pytest.skip(f"no kept edit runs under {kept} (moved aside after the last change of what an edit does)")
    for record in records:
        identity, slug = record.parents[2].name, record.parent.name
        recorded = json.loads(record.read_text())
        trainer = S.edit_config(prompts[slug], identity, config, kept)
        assert S.settings_digest(trainer, recorded["steps"]) == recorded["edit_settings"], record
        # Made with the shipped built-in model: scores of another version's edits are not today's.
        assert recorded["base_weights"] == shipped, record
        # Made by today's edit: scores of edits made before a change of what an edit does are not today's.
        assert recorded.get("edit_behaviour") == S.EDIT_BEHAVIOUR, record


def test_edit_args_change_the_preset_of_every_edit(tmp_path):
    import tyro

    command = tyro.cli(S.SuiteCommand, args=["--edit-args=--pipeline.guidance.k-timestep 123"])
    prompt = "photo of a person with red hair"
    changed = S.edit_config(prompt, "blue-long-tan", command, tmp_path)
    unchanged = S.edit_config(prompt, "blue-long-tan", S.SuiteConfig(), tmp_path)
    assert changed.pipeline.guidance.k_timestep == 123 and unchanged.pipeline.guidance.k_timestep != 123
    assert changed.pipeline.model.prompt == prompt  # the rest as the suite sets it


def test_a_method_of_the_ablation_changes_the_preset_and_has_its_own_runs_and_personalisation(tmp_path):
    prompt = "photo of a person with red hair"
    ours = S.edit_config(prompt, "blue-long-tan", S.SuiteConfig(), tmp_path)
    one_identifier = S.edit_config(prompt, "blue-long-tan", S.SuiteConfig(), tmp_path, S.METHODS["single-identifier"])
    plain_sds = S.edit_config(prompt, "blue-long-tan", S.SuiteConfig(), tmp_path, S.METHODS["sds"])
    assert one_identifier.pipeline.personalization.shared_identifier
    assert not ours.pipeline.personalization.shared_identifier
    personalizations = tmp_path / "personalizations"
    assert ours.pipeline.guidance.personalization_dir == personalizations / "blue-long-tan"
    assert one_identifier.pipeline.guidance.personalization_dir == personalizations / "blue-long-tan-single-identifier"
    assert not plain_sds.pipeline.guidance.use_personalized
    # The preset's own runs keep their folders (the suite of one method and the ablation share them); others differ.
    runs = {
        S.edit_run(tmp_path, "blue-long-tan", prompt, c, S.METHODS[m])
        for c, m in ((ours, "vt-sds"), (plain_sds, "sds"))
    }
    assert S.run_dir(tmp_path, "blue-long-tan", ours.method_name, S.slug(prompt)) in runs and len(runs) == 2


def test_with_several_methods_the_table_has_a_method_column_and_each_method_s_mean_and_worst():
    rows = [
        {"identity": "a", "prompt": "photo of a person with red hair", "method": method, "seconds": 10.0, **row}
        for method, psnr in (("VT-SDS (ours)", 40.0), ("SDS", 20.0), ("VT-SDS (ours)", 36.0), ("SDS", 22.0))
        for row in [S.suite_row({299: _scores(psnr, 0.95)})]
    ]
    table = S.suite_markdown(rows).splitlines()
    assert "| method |" in table[0]
    worst = {line.split(" | ")[2]: line for line in table if line.startswith("| **worst**")}
    assert set(worst) == {"**VT-SDS (ours)**", "**SDS**"}
    assert "| 36.00 |" in worst["**VT-SDS (ours)**"] and "| 20.00 |" in worst["**SDS**"]
    # One method: no method column, as before.
    assert "| method |" not in S.suite_markdown(rows[::2]).splitlines()[0]


def test_the_demo_and_eval_measure_every_prompt_of_the_suite():
    """``avatarstudio demo`` and ``avatarstudio eval`` score a prompt found in the built-in prompt set; a suite prompt
    missing there is edited by the demo but never measured."""
    for prompt in S.SUITE_PROMPTS.prompts:
        assert DEFAULT_PROMPT_SET.find(prompt.prompt) == prompt
