"""The edit's trainer: nerfstudio's Trainer, starting from a recon's weights with fresh optimisers."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Type

import torch
import yaml
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from avatarstudio_ns.data.dataparser import capture_fingerprint
from avatarstudio_ns.recon.model import AvatarReconModelConfig
from avatarstudio_ns.recon.trainer import AvatarTrainer, AvatarTrainerConfig


@dataclass
class EditTrainerConfig(AvatarTrainerConfig):
    """Trainer for the edit stage; ``--load-dir`` names the recon (or an interrupted edit) to start from."""

    _target: Type = field(default_factory=lambda: EditTrainer)

    def save_config(self) -> None:
        """Writes config.yml; an edit resumed in its own run folder keeps the recon's architecture recorded there.

        ns-train writes the config before the trainer's setup reads the one beside ``--load-dir``. When that is this
        run's own folder (``--load-dir <run>/nerfstudio_models`` with the run's ``--timestamp``), the write replaced
        the recon's architecture, which the first start had inherited, by the preset's, and the resume failed on
        every layer's size; it is inherited from the file about to be replaced instead.
        """
        path = self.get_base_dir() / "config.yml"
        if self.load_dir is not None and path.is_file():
            if Path(self.load_dir).resolve().parent == path.parent.resolve():
                inherit_recon_config(self, path)
        super().save_config()


def find_checkpoint(load_dir: Path, load_step: int | None = None) -> Path:
    """Path of the nerfstudio checkpoint at ``load_step`` (default: the latest) in ``load_dir``.

    Raises:
        FileNotFoundError: with a sentence naming the folder, when it holds no such checkpoint.
    """
    load_dir = Path(load_dir)
    if not load_dir.is_dir():
        raise FileNotFoundError(
            f"--load-dir {load_dir} does not exist; pass the nerfstudio_models folder of a finished "
            "`ns-train avatarstudio-recon` run."
        )
    if (load_dir / "nerfstudio_models").is_dir():
        raise FileNotFoundError(
            f"--load-dir {load_dir} is a run folder; pass the checkpoint folder inside it: "
            f"--load-dir {load_dir / 'nerfstudio_models'}."
        )
    steps = sorted(
        int(name[len("step-") : -len(".ckpt")])
        for name in os.listdir(load_dir)
        if name.startswith("step-") and name.endswith(".ckpt")
    )
    if not steps:
        raise FileNotFoundError(
            f"{load_dir} holds no nerfstudio checkpoint (step-*.ckpt); pass the nerfstudio_models folder of a "
            "finished `ns-train avatarstudio-recon` run to --load-dir."
        )
    step = steps[-1] if load_step is None else load_step
    path = load_dir / f"step-{step:09d}.ckpt"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; the steps saved in {load_dir} are {steps}.")
    return path


def read_avatar_run_config(path: Path) -> TrainerConfig:
    """The config.yml of the run an edit starts from, which must be an avatar's (a recon, or an edit to resume).

    Raises:
        ValueError: with a sentence naming the file, when it is another method's run or cannot be read.
    """
    path = Path(path)
    try:
        run = yaml.load(path.read_text(), Loader=yaml.Loader)
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(
            f"{path} cannot be read as an ns-train config ({type(error).__name__}); pass --load-dir the "
            "nerfstudio_models folder of an `ns-train avatarstudio-recon` run."
        ) from error
    model = getattr(getattr(run, "pipeline", None), "model", None)
    if not isinstance(model, AvatarReconModelConfig):
        raise ValueError(
            f"{path} is a {getattr(run, 'method_name', None) or type(model).__name__} run, not an avatar, so the edit "
            "cannot load its weights; pass --load-dir the nerfstudio_models folder of an `ns-train "
            "avatarstudio-recon` (or avatarstudio-recon-cpu) run."
        )
    return run


def check_same_capture(config: TrainerConfig, run: TrainerConfig, load_dir: Path) -> None:
    """Refuses an edit whose --data is not the capture the run in ``load_dir`` was trained on.

    The paths may differ (a capture moved or copied between the recon and the edit): then the captures' contents are
    compared. A recorded capture that no longer exists cannot be compared and is let through (so is a --data that
    holds no capture: the dataparser says what is wrong with it).

    Raises:
        ValueError: with a sentence naming both captures, when they differ.
    """
    datamanager = config.pipeline.datamanager
    data = datamanager.data or datamanager.dataparser.data
    recorded = run.pipeline.datamanager.data or run.pipeline.datamanager.dataparser.data
    if data is None or recorded is None or Path(data).resolve() == Path(recorded).resolve():
        return
    # A capture that cannot be read is left to the dataparser, whose message says what is wrong with it.
    prints = capture_fingerprint(recorded), capture_fingerprint(data)
    if None in prints or prints[0] == prints[1]:
        return
    raise ValueError(
        f"--data {data} is another capture than {recorded}, which the run in --load-dir {load_dir} was trained on; "
        f"pass --data {recorded}, or --load-dir the nerfstudio_models folder of a recon of {data}."
    )


def inherit_recon_config(config: EditTrainerConfig, recon_config_path: Path) -> None:
    """Copies the recon's model architecture and dataparser options into the edit's config.

    The edit loads the recon's weights, so its model must be built with the same sizes, and its dataparser
    must centre and scale the capture the same way.

    Raises:
        ValueError: when the run is not an avatar's (see :func:`read_avatar_run_config`).
    """
    recon = read_avatar_run_config(recon_config_path)
    inherit_fields(config.pipeline.model, recon.pipeline.model)
    inherit_fields(config.pipeline.datamanager.dataparser, recon.pipeline.datamanager.dataparser)


def inherit_fields(target: Any, source: Any) -> None:
    """Sets each field of the config ``target`` that ``source`` also has to the source's value, except the fields that
    ``target``'s own class declares when the two classes differ (the edit model's prompt, entropy weight...), its
    ``_target`` and its ``data``."""
    keep = {"_target", "data"}
    if type(target) is not type(source):
        keep |= set(vars(type(target)).get("__annotations__", {}))
    source_fields = {f.name for f in dataclasses.fields(source)}
    for f in dataclasses.fields(target):
        if f.name in source_fields and f.name not in keep:
            setattr(target, f.name, getattr(source, f.name))


def check_prompt(config: TrainerConfig) -> None:
    """Refuses an empty edit prompt (the edit would distil the model's unconditional image).

    ``ns-train --prompt ""`` sets nothing (nerfstudio applies the alias only when it is non-empty), so it is checked
    here too: the edit would otherwise run with the preset's prompt.

    Raises:
        ValueError: naming --prompt.
    """
    if not config.pipeline.model.prompt.strip() or (config.prompt is not None and not config.prompt.strip()):
        raise ValueError(
            'The edit prompt is empty; pass what the avatar should look like, e.g. --prompt "photo of a person with '
            'blue hair".'
        )


def _same_optimizer_groups(saved: dict, groups: dict) -> bool:
    """Whether a checkpoint's optimisers are this run's own: the same groups with the same parameter shapes (an
    edit with other trainable parts, or a recon, is not resumed but contributes its weights)."""
    if set(saved) != set(groups):
        return False
    for name, params in groups.items():
        state = saved[name].get("state", {})
        saved_count = sum(len(group["params"]) for group in saved[name].get("param_groups", []))
        if saved_count != len(params):
            return False
        for index, parameter in enumerate(params):
            moment = state.get(index, {}).get("exp_avg")
            if moment is not None and tuple(moment.shape) != tuple(parameter.shape):
                return False
    return True


class EditTrainer(AvatarTrainer):
    """Starts an edit from a recon checkpoint, or resumes an interrupted edit.

    A checkpoint whose optimiser groups are exactly the edit's own comes from an edit run and is resumed
    whole (weights, optimisers, schedulers, step). Any other checkpoint (a recon) contributes its model
    weights only: the edit gets fresh optimisers and runs its configured number of iterations from step 0,
    so its timestep annealing spans the whole edit whatever step the recon ended at.
    """

    config: EditTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """Builds the pipeline with the architecture of the run named by --load-dir, then loads it.

        Raises:
            ValueError: an empty prompt, or a --load-dir run that is not an avatar of the --data capture.
            FileNotFoundError: a --load-dir without a checkpoint, or without the config.yml beside it.
        """
        # Every check comes before anything is built or written, so a wrong option costs seconds, not a run.
        check_prompt(self.config)
        if self.config.load_dir is not None:
            load_dir = Path(self.config.load_dir)
            find_checkpoint(load_dir, self.config.load_step)
            recon_config = load_dir.parent / "config.yml"
            if not recon_config.exists():
                raise FileNotFoundError(
                    f"{recon_config} is missing: --load-dir must be the nerfstudio_models folder of an ns-train run, "
                    "beside its config.yml."
                )
            check_same_capture(self.config, read_avatar_run_config(recon_config), load_dir)
            inherit_recon_config(self.config, recon_config)
            # ns-train saved config.yml before this point; rewrite it so ns-viewer / ns-render rebuild the
            # edited avatar with the inherited architecture. An edit resumed in its own folder keeps the one it has
            # (its first start's, or ns-train's, which kept the architecture: EditTrainerConfig.save_config).
            if recon_config.resolve() != (self.config.get_base_dir() / "config.yml").resolve():
                self.config.save_config()
        super().setup(test_mode=test_mode)

    def _load_checkpoint(self) -> None:
        if self.config.load_dir is None and self.config.load_checkpoint is None:
            super()._load_checkpoint()
            return
        path = (
            Path(self.config.load_checkpoint)
            if self.config.load_checkpoint is not None
            else find_checkpoint(Path(self.config.load_dir), self.config.load_step)
        )
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass a checkpoint written by ns-train.")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if _same_optimizer_groups(loaded.get("optimizers", {}), self.optimizers.parameters):
            # nerfstudio's load (weights, optimisers, schedulers, step), the guidance, then the random streams: the
            # uninterrupted run built the guidance before its first step, so what building it draws is in the saved
            # streams already, and the resumed run goes on with the same noise.
            Trainer._load_checkpoint(self)
            self.pipeline.get_guidance()
            if loaded.get("guidance") is not None:
                self.pipeline.load_guidance_state(loaded["guidance"])
            self.restore_random_state()
            CONSOLE.print(f"Resumed the edit from {path} at step {self._start_step}.")
            return
        # The edit samples as the recon did at its last step (not at step 0: uniform resampling), see update_to_step.
        recon_step = int(loaded.get("step", 0))
        self.pipeline.model.start_from_recon_step(recon_step)
        self.pipeline.load_pipeline(loaded["pipeline"], step=recon_step)
        self._start_step = 0
        CONSOLE.print(f"Loaded the avatar's weights from {path}; editing with fresh optimisers from step 0.")

    def checkpoint_extras(self) -> dict[str, Any]:
        """The guidance's own training state (the dataset-update baseline's edited targets), which a resumed edit
        needs to go on as the uninterrupted run did."""
        state = getattr(self.pipeline, "module", self.pipeline).guidance_state()
        return {} if state is None else {"guidance": state}
