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


@dataclass
class EditTrainerConfig(TrainerConfig):
    """Trainer for the edit stage; ``--load-dir`` names the recon (or an interrupted edit) to start from."""

    _target: Type = field(default_factory=lambda: EditTrainer)


def find_checkpoint(load_dir: Path, load_step: int | None = None) -> Path:
    """Path of the nerfstudio checkpoint at ``load_step`` (default: the latest) in ``load_dir``.

    Raises:
        FileNotFoundError: with a sentence naming the folder, when it holds no such checkpoint.
    """
    load_dir = Path(load_dir)
    steps = sorted(
        int(name[len("step-") : -len(".ckpt")])
        for name in (os.listdir(load_dir) if load_dir.is_dir() else [])
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


def inherit_recon_config(config: EditTrainerConfig, recon_config_path: Path) -> None:
    """Copies the recon's model architecture and dataparser options into the edit's config.

    The edit loads the recon's weights, so its model must be built with the same sizes, and its dataparser
    must centre and scale the capture the same way.
    """
    recon = yaml.load(Path(recon_config_path).read_text(), Loader=yaml.Loader)
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


class EditTrainer(Trainer):
    """Starts an edit from a recon checkpoint, or resumes an interrupted edit.

    A checkpoint whose optimiser groups are exactly the edit's own comes from an edit run and is resumed
    whole (weights, optimisers, schedulers, step). Any other checkpoint (a recon) contributes its model
    weights only: the edit gets fresh optimisers and runs its configured number of iterations from step 0,
    so its timestep annealing spans the whole edit whatever step the recon ended at.
    """

    config: EditTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """Builds the pipeline with the architecture of the run named by --load-dir, then loads it."""
        if self.config.load_dir is not None:
            recon_config = Path(self.config.load_dir).parent / "config.yml"
            if not recon_config.exists():
                raise FileNotFoundError(
                    f"{recon_config} is missing: --load-dir must be the nerfstudio_models folder of an ns-train run, "
                    "beside its config.yml."
                )
            inherit_recon_config(self.config, recon_config)
            # ns-train saved config.yml before this point; rewrite it so ns-viewer / ns-render rebuild the
            # edited avatar with the inherited architecture.
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
            super()._load_checkpoint()
            CONSOLE.print(f"Resumed the edit from {path} at step {self._start_step}.")
            return
        # The edit samples as the recon did at its last step (not at step 0: uniform resampling), see update_to_step.
        recon_step = int(loaded.get("step", 0))
        self.pipeline.model.start_from_recon_step(recon_step)
        self.pipeline.load_pipeline(loaded["pipeline"], step=recon_step)
        self._start_step = 0
        CONSOLE.print(f"Loaded the avatar's weights from {path}; editing with fresh optimisers from step 0.")
