"""Settings and fixtures shared by every test."""

import copy
from pathlib import Path

import pytest
import torch

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.data.synth import CaptureConfig, render_capture
from avatarstudio_ns.edit import pipeline as edit_pipeline
from avatarstudio_ns.scripts.personalize import PersonalizeCommand
from avatarstudio_ns.threads import torch_threads
from method_configs.edit import avatarstudio_edit_fast
from method_configs.recon import avatarstudio_recon_cpu

RECON_STEPS = 60
EDIT_STEPS = 4
EDIT_PROMPT_CHECKS: list[tuple[str, str]] = []
"""(base model source, prompt) of each check of the prompt's words that the ``edited`` fixture's run made."""


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' tiny models run several times faster on one torch thread than on a few contended ones."""
    with torch_threads(1):
        yield


def quiet_config(config, output_dir: Path, steps: int):
    """A trainer config that runs ``steps`` iterations into ``output_dir``, saves once, logs and shows nothing."""
    config.output_dir = output_dir
    config.max_num_iterations = steps
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 10**9  # the trainer saves once at the end
    config.logging.local_writer.enable = False
    config.vis = "tensorboard"
    config.set_timestamp()
    config.save_config()
    return config


def train(config):
    """nerfstudio's trainer, set up and run in this process."""
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer


@pytest.fixture(scope="session")
def recon(tmp_path_factory):
    """A short recon of a tiny capture: 6 cameras (camera 5 held out), 3 frames, 32 px; (capture, config)."""
    capture = render_capture(
        CaptureConfig(
            output=tmp_path_factory.mktemp("capture"), num_cameras=6, num_frames=3, resolution=32, progress=False
        )
    )
    return capture, tiny_recon(capture, tmp_path_factory.mktemp("recon"))


def tiny_recon(capture: Path, output_dir: Path, steps: int = RECON_STEPS):
    """The CPU recon preset on ``capture`` for ``steps`` iterations of 256 rays, seeded; returns its config."""
    config = copy.deepcopy(avatarstudio_recon_cpu.config)
    config.pipeline.datamanager.data = capture
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    quiet_config(config, output_dir, steps)
    torch.manual_seed(0)
    train(config)
    return config


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random diffusion model in diffusers' folder layout."""
    return write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())


def tiny_edit_config(capture: Path, model: Path, personalization_dir: Path):
    """The fast edit preset at the tests' sizes (32 px renders and guidance, one time keyframe, a 3-step LoRA
    personalisation of ``model``) on ``capture``, personalised into ``personalization_dir``."""
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    config.pipeline.datamanager.data = capture
    config.pipeline.datamanager.render_resolution = 32
    config.pipeline.model.prompt = "photo of a person with blue hair"
    config.pipeline.keyframes.n_time = 1
    config.pipeline.guidance.base_model = str(model)
    config.pipeline.guidance.guidance_resolution = 32
    config.pipeline.guidance.personalization_dir = personalization_dir
    personalization = config.pipeline.personalization
    personalization.steps, personalization.resolution, personalization.lora_rank = 3, 32, 4
    personalization.num_class_images, personalization.class_image_steps = 2, 2
    personalization.progress = False
    return config


@pytest.fixture(scope="session")
def edited(recon, tiny_model, tmp_path_factory):
    """A few VT-SDS steps from the recon's checkpoint, personalising a tiny random diffusion model first."""
    capture, recon_config = recon
    model = tiny_model
    config = tiny_edit_config(capture, model, tmp_path_factory.mktemp("personal") / "run")
    personalization = config.pipeline.personalization
    # `avatarstudio personalize` first, with the edit's settings: the edit must reuse its result.
    PersonalizeCommand(
        load_config=recon_config.get_base_dir() / "config.yml",
        output=config.pipeline.guidance.personalization_dir,
        base_model=str(model),
        keyframes=copy.deepcopy(config.pipeline.keyframes),
        personalization=copy.deepcopy(personalization),
        device="cpu",
    ).main()
    config.load_dir = recon_config.get_base_dir() / "nerfstudio_models"
    quiet_config(config, tmp_path_factory.mktemp("edit"), EDIT_STEPS)
    torch.manual_seed(0)
    check = edit_pipeline.warn_if_unknown_words

    def recorded_check(base, prompt):
        EDIT_PROMPT_CHECKS.append((base.source, prompt))
        return check(base, prompt)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edit_pipeline, "warn_if_unknown_words", recorded_check)
        trainer = train(config)
    return config, trainer


@pytest.fixture
def tiny_edit_preset(monkeypatch):
    """The fast edit preset shrunk to tiny captures and models for one test (commands that copy the preset, such as
    ablate and suite, then run at that size); returns its pipeline config."""
    preset = avatarstudio_edit_fast.config.pipeline
    monkeypatch.setattr(preset.datamanager, "render_resolution", 32)
    monkeypatch.setattr(preset.guidance, "guidance_resolution", 32)
    monkeypatch.setattr(preset.keyframes, "n_time", 1)
    for name, value in dict(steps=2, resolution=32, lora_rank=4, num_class_images=2, class_image_steps=2).items():
        monkeypatch.setattr(preset.personalization, name, value)
    monkeypatch.setattr(preset.personalization, "progress", False)
    return preset
