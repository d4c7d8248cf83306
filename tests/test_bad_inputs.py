"""Bad inputs across the commands (issue 15, part 2): each is answered by one sentence that names the file or option
and the fix, before anything is written, and nothing the user had is lost or overwritten."""

from __future__ import annotations

import copy
import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import quiet_config, tiny_edit_config, tiny_recon, train

from avatarstudio_ns import atomic
from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
from avatarstudio_ns.data.keyframes import Keyframe, KeyframeSelectionConfig, select_keyframes
from avatarstudio_ns.data.synth import CaptureConfig, render_capture
from avatarstudio_ns.edit.trainer import EditTrainer, check_same_capture, read_avatar_run_config
from avatarstudio_ns.guidance import loading
from avatarstudio_ns.guidance.loading import DiffusionModelNotFound, load_diffusion, warn_if_unknown_words
from avatarstudio_ns.guidance.personalization.finetune import PersonalizeConfig, personalize
from avatarstudio_ns.recon.trainer import AvatarTrainer
from avatarstudio_ns.scripts.demo import DemoConfig, run_demo
from avatarstudio_ns.scripts.runs import base_model_weights
from method_configs.edit import avatarstudio_edit, avatarstudio_edit_fast
from method_configs.recon import avatarstudio_recon, avatarstudio_recon_cpu

RECON_STEPS = 30


def _capture(folder: Path, **attributes) -> Path:
    """A tiny synthetic capture: 4 cameras (camera 3 held out), 2 frames, 24 px."""
    config = CaptureConfig(output=folder, num_cameras=4, num_frames=2, resolution=24, progress=False, **attributes)
    return render_capture(config)


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    return _capture(tmp_path_factory.mktemp("capture") / "head")


@pytest.fixture(scope="module")
def other_capture(tmp_path_factory) -> Path:
    """Another head (red hair, another performance) seen by the same rig: the transforms files can be alike."""
    return _capture(tmp_path_factory.mktemp("other") / "head", hair_color="red", seed=1)


@pytest.fixture(scope="module")
def recon(capture, tmp_path_factory):
    """The CPU recon preset on ``capture``, 30 steps of 256 rays; (config, trainer)."""
    config = copy.deepcopy(avatarstudio_recon_cpu.config)
    config.pipeline.datamanager.data = capture
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    quiet_config(config, tmp_path_factory.mktemp("recon"), RECON_STEPS)
    torch.manual_seed(0)
    return config, train(config)


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and content: equal snapshots mean nothing changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


def _one_line(text: str) -> str:
    """A message with its line breaks (rich wraps console lines) folded into single spaces."""
    return " ".join(text.split())


def _start_edit(data: Path, load_dir: Path, model: Path, output: Path, prompt: str | None = None, alias=None):
    """Sets up the fast edit preset on ``data`` from ``load_dir`` as ns-train does (its config.yml written first, in a
    new run folder); returns that run folder. The checks under test raise from ``setup``."""
    config = tiny_edit_config(data, model, output / "personal")
    config.load_dir = load_dir
    if prompt is not None:
        config.pipeline.model.prompt = prompt
    config.prompt = alias
    quiet_config(config, output, 1)
    try:
        config.setup(local_rank=0, world_size=1).setup()
    finally:
        # Nothing but the config.yml that ns-train writes before the trainer starts.
        assert [p.name for p in config.get_base_dir().iterdir()] == ["config.yml"]
    return config.get_base_dir()


def _nerfacto_run(folder: Path, capture: Path) -> Path:
    """A stand-in for a nerfacto run: nerfacto's config.yml and a checkpoint with nerfacto's kind of keys."""
    # nerfacto's own classes, not nerfstudio's method_configs (which imports every method it knows: seconds).
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.models.nerfacto import NerfactoModelConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    pipeline = VanillaPipelineConfig(datamanager=VanillaDataManagerConfig(data=capture), model=NerfactoModelConfig())
    checkpoints = folder / "nerfstudio_models"
    checkpoints.mkdir(parents=True)
    (folder / "config.yml").write_text(yaml.dump(TrainerConfig(method_name="nerfacto", pipeline=pipeline)))
    state = {"_model.field.mlp_base.params": torch.zeros(8), "_model.proposal_networks.0.params": torch.zeros(4)}
    torch.save({"step": 29999, "pipeline": state, "optimizers": {}}, checkpoints / "step-000029999.ckpt")
    return checkpoints


LOAD_DIR_ANSWERS = {
    "nerfacto": "{run}/config.yml is a nerfacto run, not an avatar, so the edit cannot load its weights; pass "
    "--load-dir the nerfstudio_models folder of an `ns-train avatarstudio-recon` (or avatarstudio-recon-cpu) run.",
    "empty": "{load_dir} holds no nerfstudio checkpoint (step-*.ckpt); pass the nerfstudio_models folder of a finished "
    "`ns-train avatarstudio-recon` run to --load-dir.",
    "run-folder": "--load-dir {load_dir} is a run folder; pass the checkpoint folder inside it: --load-dir "
    "{load_dir}/nerfstudio_models.",
}


@pytest.mark.parametrize("kind", LOAD_DIR_ANSWERS)
def test_a_load_dir_without_an_avatar_is_refused_before_anything_is_written(kind, capture, recon, tiny_model, tmp_path):
    recon_config, _ = recon
    load_dir = {
        "nerfacto": lambda: _nerfacto_run(tmp_path / "nerfacto", capture),
        "empty": lambda: tmp_path / "empty" / "nerfstudio_models",
        "run-folder": lambda: recon_config.get_base_dir(),
    }[kind]()
    load_dir.mkdir(parents=True, exist_ok=True)
    before = _files(load_dir.parent)
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        _start_edit(capture, load_dir, tiny_model, tmp_path / "edit")
    assert str(error.value) == LOAD_DIR_ANSWERS[kind].format(run=load_dir.parent, load_dir=load_dir)
    assert _files(load_dir.parent) == before


def _edit_run(folder: Path, data: Path, recon_checkpoints: Path) -> Path:
    """A stand-in for an edit run on ``data``: the fast edit preset's config.yml and a checkpoint."""
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    config.pipeline.datamanager.data = data
    quiet_config(config, folder, 1)
    checkpoints = config.get_base_dir() / "nerfstudio_models"
    shutil.copytree(recon_checkpoints, checkpoints)
    return checkpoints


@pytest.mark.parametrize("start", ["recon of the capture, --data of another", "edit of another capture"])
def test_a_load_dir_of_another_capture_than_data_is_refused(start, capture, other_capture, recon, tiny_model, tmp_path):
    recon_config, _ = recon
    checkpoints = recon_config.get_base_dir() / "nerfstudio_models"
    if start == "edit of another capture":
        load_dir = _edit_run(tmp_path / "other_edit", other_capture, checkpoints)
        recorded, data = other_capture, capture
    else:
        load_dir, recorded, data = checkpoints, capture, other_capture
    before = _files(load_dir.parent)
    with pytest.raises(ValueError) as error:
        _start_edit(data, load_dir, tiny_model, tmp_path / "edit")
    assert _one_line(str(error.value)) == (
        f"--data {data} is another capture than {recorded}, which the run in --load-dir {load_dir} was trained on; "
        f"pass --data {recorded}, or --load-dir the nerfstudio_models folder of a recon of {data}."
    )
    assert _files(load_dir.parent) == before


def test_a_capture_moved_or_copied_since_the_recon_is_still_its_capture(capture, other_capture, recon, tmp_path):
    """The captures are compared by content, not by path: a copy is the same capture, a gone one is let through."""
    recon_config, _ = recon
    run = read_avatar_run_config(recon_config.get_base_dir() / "config.yml")
    edit = copy.deepcopy(avatarstudio_edit_fast.config)
    copied = shutil.copytree(capture, tmp_path / "copied")
    edit.pipeline.datamanager.data = copied
    check_same_capture(edit, run, tmp_path)
    edit.pipeline.datamanager.data = copied / "transforms_train.json"  # --data may name the capture's JSON
    check_same_capture(edit, run, tmp_path)
    edit.pipeline.datamanager.data = other_capture
    with pytest.raises(ValueError, match="is another capture than"):
        check_same_capture(edit, run, tmp_path)
    run.pipeline.datamanager.data = tmp_path / "moved-away"
    check_same_capture(edit, run, tmp_path)


def _keyframe_images(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 24, 24, generator=generator) for _ in range(2)]


@pytest.mark.parametrize("other", ["avatar", "base model"])
def test_a_personalisation_folder_of_another_avatar_or_base_model_is_kept(other, tiny_model, tmp_path):
    keyframes = [Keyframe(camera, 0, 0.0) for camera in range(2)]
    settings = PersonalizeConfig(steps=1, resolution=32, lora_rank=2, prior_weight=0.0, progress=False)
    base = load_diffusion(str(tiny_model))
    folder = tmp_path / "personal"
    personalize(keyframes, _keyframe_images(0), base, settings, folder)
    # The same avatar and model from a copied model folder, with other settings: retrained in place, as before.
    copied = load_diffusion(str(shutil.copytree(tiny_model, tmp_path / "copied_model")))
    personalize(keyframes, _keyframe_images(0), copied, PersonalizeConfig(**{**vars(settings), "steps": 2}), folder)
    assert json.loads((folder / "personalization.json").read_text())["steps"] == 2
    before = _files(folder)

    images, model = _keyframe_images(0), base
    if other == "avatar":
        images = _keyframe_images(1)
    else:
        model = load_diffusion(str(write_small_model(tmp_path / "another", SmallModelConfig.tiny(), seed=1)))
    with pytest.raises(ValueError) as error:
        personalize(keyframes, images, model, settings, folder)
    fix = (
        "pass another folder (--pipeline.guidance.personalization-dir, or --output of avatarstudio personalize), or "
        f"delete {folder} to personalise this "
    )
    if other == "avatar":
        expected = (
            f"{folder} holds a personalisation of another avatar (its keyframe camera 0 @ frame 0 is another image "
            f"than this capture's); {fix}avatar there."
        )
    else:
        expected = (
            f"{folder} holds a personalisation of another base model ({copied.source}, not {model.source}); {fix}"
            "model there."
        )
    assert str(error.value) == expected
    assert _files(folder) == before


@pytest.mark.parametrize("where", ["--pipeline.model.prompt ''", "ns-train --prompt ''", "demo --prompt '  '"])
def test_an_empty_prompt_is_refused(where, capture, recon, tiny_model, tmp_path):
    recon_config, _ = recon
    load_dir = recon_config.get_base_dir() / "nerfstudio_models"
    before = _files(recon_config.get_base_dir())
    with pytest.raises(ValueError) as error:
        if where.startswith("demo"):
            run_demo(DemoConfig(output=tmp_path / "demo", prompt="  ", base_model=str(tiny_model)))
        elif where.startswith("ns-train"):
            _start_edit(capture, load_dir, tiny_model, tmp_path / "edit", alias="")
        else:
            _start_edit(capture, load_dir, tiny_model, tmp_path / "edit", prompt="")
    answer = 'pass what the avatar should look like, e.g. --prompt "photo of a person with blue hair"'
    if where.startswith("demo"):
        assert str(error.value) == f"--prompt is empty; {answer}, or leave --prompt out for that one."
    else:
        assert str(error.value) == f"The edit prompt is empty; {answer}."
    assert _files(recon_config.get_base_dir()) == before and not (tmp_path / "demo").exists()


def test_a_prompt_longer_than_the_text_encoder_reads_warns_what_it_keeps_and_drops(tiny_model, caplog):
    base = load_diffusion(str(tiny_model))
    phrase = "a photo of a person with blue hair"  # 8 tokens for the tiny model's tokenizer
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.guidance.loading"):
        base.embed(phrase)
        assert not caplog.records
        long = base.embed(" ".join([phrase] * 10))  # 80 tokens, 82 with the start and end tokens
    (record,) = caplog.records
    assert record.getMessage() == (
        "The prompt is 80 tokens long but the text encoder reads 75: it keeps the prompt up to "
        "'...of a person with blue hair a photo of' and drops the last 5 tokens ('a person with blue hair'); shorten "
        "the prompt to have all of it read."
    )
    # What the warning says is kept is what is encoded.
    assert torch.equal(long, base.embed(" ".join([phrase] * 9 + ["a photo of"])))


def test_prompt_words_the_builtin_model_never_read_are_named(tiny_model, caplog, monkeypatch):
    monkeypatch.setattr(loading, "_WARNED_UNKNOWN_WORDS", set())  # as in a fresh process
    builtin = load_diffusion("builtin")
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.guidance.loading"):
        assert warn_if_unknown_words(builtin, "Photo of a person with long blue hair, dark skin and green eyes.") == []
        assert not caplog.records
        assert warn_if_unknown_words(builtin, "photo of an old person, the Joker, old") == ["an", "old", "the", "joker"]
    (record,) = caplog.records
    assert record.getMessage().startswith(
        f"The base model {builtin.source} was trained only on captions that never use 'an', 'old', 'the', 'joker', "
        "so it will not follow them. It knows these words: a and black blonde blue bob brown dark eyebrows eyes "
        "green grey hair hazel in light lips long medium natural of pale person photo pink purple red short skin tan "
        "white with. Reword the prompt with them, or pass a Stable Diffusion model with --base-model."
    )
    # The demo, the suite and the ablation check their prompts when they load the base model, before any run.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.guidance.loading"):
        base_model_weights("builtin", ["photo of a person with blue hair", "photo of an old person"])
    (record,) = caplog.records
    assert "never use 'an', 'old', so it will not follow them" in record.getMessage()
    # Once: the edit run that follows checks its prompt again, and says nothing new.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.guidance.loading"):
        assert warn_if_unknown_words(builtin, "photo of an old person") == ["an", "old"]
    assert not caplog.records
    # A model that does not record its captions' words (Stable Diffusion's layout alone) is not checked.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.guidance.loading"):
        assert warn_if_unknown_words(load_diffusion(str(tiny_model)), "photo of an old person") == []
    assert not caplog.records


@pytest.mark.parametrize("damage", ["no unet/", "truncated unet weights"])
def test_a_broken_base_model_folder_is_named(damage, tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if damage == "no unet/":
        shutil.rmtree(folder / "unet")
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    before = _files(folder)
    with pytest.raises(DiffusionModelNotFound) as error:
        load_diffusion(str(folder))
    message = str(error.value)
    if damage == "no unet/":
        assert message.startswith(f"{folder} is not a diffusers model folder: it lacks unet/. Pass a local diffusers")
    else:
        # The reason in the brackets is the safetensors library's own.
        assert message.startswith(f"{weights} cannot be read (") and message.endswith(
            f"): the copy of {folder} is incomplete or damaged, so copy or download it again, or pass another base "
            "model."
        )
    assert _files(folder) == before


def _thinned(capture: Path, folder: Path, *kinds: str) -> Path:
    """A copy of ``capture`` without masks, with one training camera, and/or with one frame."""
    shutil.copytree(capture, folder)
    for split in ("train", "val", "test"):
        path = folder / f"transforms_{split}.json"
        meta = json.loads(path.read_text())
        frames = meta["frames"]
        if "no masks" in kinds:
            frames = [{k: v for k, v in frame.items() if k != "fg_mask_path"} for frame in frames]
        if "one camera" in kinds and split == "train":
            frames = [frame for frame in frames if frame["camera_index"] == meta["frontal_camera_index"]]
        if "one frame" in kinds:
            frames = [frame for frame in frames if frame["timestep_index"] == 0]
        path.write_text(json.dumps({**meta, "frames": frames}))
    return folder


@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "no masks",
            "transforms_train.json names no foreground masks (fg_mask_path), so the recon trains without its mask loss "
            "and may keep the backdrop in the head's box; add fg_mask_path to every frame if the capture has masks "
            "(docs/data_format.md).",
        ),
        (
            "one camera",
            "transforms_train.json: every training image is from camera 2, so the avatar is seen from one side only "
            "and other views of it are guesses; train on a capture with several cameras for a whole head.",
        ),
        (
            "one frame",
            "Only 0 of 6 time keyframes fit: frontal camera 2 sees 1 frame(s), frame 0 is a keyframe already and picks "
            "lie more than 1 frame(s) apart (--pipeline.keyframes.min-gap), so the edit sees fewer moments.",
        ),
    ],
    ids=["no-masks", "one-camera", "one-frame"],
)
def test_a_thin_capture_is_read_with_one_line_saying_what_it_lacks(kind, expected, capture, tmp_path, capsys, caplog):
    """Masks, a second camera and a second frame are not needed to train (the recon and the edit run without them),
    but their absence is said, naming the file or option: a key misnamed by an exporter does not pass unnoticed."""
    folder = _thinned(capture, tmp_path / "capture", kind)
    outputs = AvatarStudioDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    metadata = outputs.metadata
    pairs = zip(metadata["camera_indices"].tolist(), metadata["timestep_indices"].tolist(), strict=True)
    with caplog.at_level(logging.WARNING, logger="avatarstudio_ns.data.keyframes"):
        keyframes = select_keyframes(
            torch.zeros(metadata["num_timesteps"], 4),
            pairs,
            metadata["frontal_camera_index"],
            KeyframeSelectionConfig(),
        )
    printed = _one_line(capsys.readouterr().out)
    said = printed + " ".join(r.getMessage() for r in caplog.records)
    assert expected in said, said
    assert keyframes, "no keyframes for the edit"
    # The capture's notes name only what it lacks.
    notes = {"no masks": "fg_mask_path", "one camera": "one side only"}
    assert [name for name, words in notes.items() if words in printed] == [kind] * (kind in notes)


def test_a_capture_without_masks_seen_by_one_camera_at_one_frame_still_trains(capture, tiny_model, tmp_path):
    """What the notes above say: such a capture is thin, not wrong, so the recon and the edit run on it."""
    folder = _thinned(capture, tmp_path / "capture", "no masks", "one camera", "one frame")
    recon = tiny_recon(folder, tmp_path / "recon", steps=4)
    config = tiny_edit_config(folder, tiny_model, tmp_path / "personal")
    config.pipeline.personalization.steps, config.pipeline.personalization.num_class_images = 1, 0
    config.load_dir = recon.get_base_dir() / "nerfstudio_models"
    quiet_config(config, tmp_path / "edit", 1)
    torch.manual_seed(0)
    trainer = train(config)
    assert [(k.camera_index, k.timestep_index) for k in trainer.pipeline.datamanager.keyframes] == [(2, 0)]
    assert list((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))


def test_a_demo_output_that_holds_something_else_is_refused(tiny_model, tmp_path):
    folder = tmp_path / "my_project"
    folder.mkdir()
    (folder / "grid.png").write_bytes(b"my own figure")  # a name the demo writes
    (folder / "scores.md").write_text("my own notes\n")  # a name the demo deletes for an unmeasured prompt
    before = _files(folder)
    with pytest.raises(ValueError) as error:
        run_demo(DemoConfig(output=folder, base_model=str(tiny_model)))
    assert str(error.value) == (
        f"--output {folder} holds other files (grid.png, scores.md) and no demo (no demo.json); give --output a new or "
        "empty folder, or one an earlier demo wrote."
    )
    assert _files(folder) == before and sorted(p.name for p in folder.iterdir()) == ["grid.png", "scores.md"]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(recon, tmp_path, monkeypatch):
    # Every ns-train preset of the package saves through AvatarTrainer.
    for preset in (avatarstudio_recon, avatarstudio_recon_cpu, avatarstudio_edit, avatarstudio_edit_fast):
        assert issubclass(preset.config._target, AvatarTrainer)
    assert issubclass(EditTrainer, AvatarTrainer)
    recon_config, trainer = recon
    run = shutil.copytree(recon_config.get_base_dir(), tmp_path / "run")
    checkpoints = run / "nerfstudio_models"
    monkeypatch.setattr(trainer, "checkpoint_dir", checkpoints)
    (previous,) = checkpoints.glob("step-*.ckpt")
    before = _files(run)

    class FullDisk:
        """A file on a disk that fills up half-way through the write."""

        def __init__(self, path, mode):
            self.file = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "open", FullDisk, raising=False)  # the atomic writer's open() only
    with pytest.raises(OSError) as error:
        trainer.save_checkpoint(RECON_STEPS)
    assert error.value.errno == errno.ENOSPC
    assert error.value.strerror == (
        f"No space left on the disk to write the checkpoint {checkpoints / f'step-{RECON_STEPS:09d}.ckpt'} "
        f"({previous} is kept intact): free space on that disk and rerun with --load-dir {checkpoints} to resume."
    )
    assert _files(run) == before, "a half-written file was left, or the previous checkpoint changed"
    assert torch.load(previous, weights_only=True)["step"] == RECON_STEPS - 1

    monkeypatch.delattr(atomic, "open")
    trainer.save_checkpoint(RECON_STEPS)  # with room again: the new checkpoint replaces the old one
    assert [p.name for p in checkpoints.iterdir()] == [f"step-{RECON_STEPS:09d}.ckpt"]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp.ckpt")]
