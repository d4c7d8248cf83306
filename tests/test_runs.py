"""Tests of the helpers that run nerfstudio training jobs from Python (avatarstudio_ns.scripts.runs)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from avatarstudio_ns.scripts.runs import fit_schedules, settings_digest
from method_configs.edit import avatarstudio_edit_fast
from method_configs.recon import CPU_STEPS, avatarstudio_recon_cpu


def test_fit_schedules_ends_every_decay_at_the_run_length():
    for preset in (avatarstudio_recon_cpu.config, avatarstudio_edit_fast.config):
        config = copy.deepcopy(preset)
        fit_schedules(config, 123)
        schedulers = [group["scheduler"] for group in config.optimizers.values()]
        assert schedulers and all(s.max_steps == 123 for s in schedulers)
    assert all(g["scheduler"].max_steps == CPU_STEPS for g in avatarstudio_recon_cpu.config.optimizers.values())


def test_settings_digest_follows_steps_and_settings_not_paths(tmp_path):
    config = copy.deepcopy(avatarstudio_recon_cpu.config)
    digest = settings_digest(config, 100)
    config.pipeline.datamanager.data = tmp_path / "elsewhere"
    assert settings_digest(config, 100) == digest
    assert settings_digest(config, 200) != digest
    config.pipeline.model.deformation_rigid = False
    assert settings_digest(config, 100) != digest


def test_settings_digest_does_not_change_when_a_config_class_moves_to_another_module(monkeypatch):
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    digest = settings_digest(config, 100)
    # Moving a config class (the restructure moved PersonalizeConfig out of guidance.personalize) changes no setting, so
    # it must not make a finished run look made with other settings (it would be refused, or the demo retrain it).
    monkeypatch.setattr(type(config.pipeline.personalization), "__module__", "avatarstudio_ns.guidance.personalize")
    assert settings_digest(config, 100) == digest
    config.pipeline.personalization.steps += 1
    assert settings_digest(config, 100) != digest


def test_an_edit_config_saved_before_the_folder_option_was_renamed_still_loads():
    # ns-viewer / ns-render / a resumed ns-train read an edit's config.yml; those saved when the personalisation folder
    # was `guidance.personalization` must keep working.
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    config.pipeline.guidance.personalization_dir = Path("/captures/personal")
    saved = yaml.dump(config).replace("personalization_dir:", "personalization:")
    guidance = yaml.load(saved, Loader=yaml.Loader).pipeline.guidance
    assert guidance.personalization_dir == Path("/captures/personal")
    assert "personalization" not in vars(guidance)
