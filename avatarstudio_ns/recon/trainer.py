"""The avatar's trainer: nerfstudio's Trainer, its checkpoints and config written under a temporary name, then
renamed, and a resumed run continuing the random streams where the checkpoint left them."""

from __future__ import annotations

import errno
import io
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Type

import numpy as np
import torch
import yaml
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from avatarstudio_ns.atomic import atomic_write_bytes, atomic_write_text


@dataclass
class AvatarTrainerConfig(TrainerConfig):
    """nerfstudio's trainer config; its checkpoints and its config.yml are written atomically (see
    :class:`AvatarTrainer`)."""

    _target: Type = field(default_factory=lambda: AvatarTrainer)

    def save_config(self) -> None:
        """Writes ``config.yml`` in the run folder, as nerfstudio does, but under a temporary name, then renamed.

        nerfstudio writes it in place at every start (and the edit rewrites it with the recon's architecture), so a
        run killed then left a cut config.yml that ns-viewer, a resumed edit and the demo's stages then failed to read.
        """
        base_dir = self.get_base_dir()
        base_dir.mkdir(parents=True, exist_ok=True)
        path = base_dir / "config.yml"
        CONSOLE.log(f"Saving config to: {path}")
        atomic_write_text(path, yaml.dump(self))


def random_state() -> dict[str, Any]:
    """The global random streams a training step draws from (torch's CPU and CUDA, numpy's, Python's), as tensors and
    numbers that ``torch.load(weights_only=True)`` reads back."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": position, "gauss": [has_gauss, gauss]},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": python_gauss},
    }


def set_random_state(state: dict[str, Any]) -> None:
    """Restores the streams :func:`random_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], *numpy["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))


class AvatarTrainer(Trainer):
    """nerfstudio's Trainer whose checkpoint is either the previous complete file or the new complete one, and holds
    the random streams, so that a run resumed from it goes on exactly as the uninterrupted run did.

    nerfstudio writes ``step-*.ckpt`` in place, so a full disk or a killed run left a truncated checkpoint under the
    name that a resumed run, ns-viewer and the edit load first (the newest step). It saves no random state either:
    a resumed recon drew other rays and samples than the run it continued, and ended elsewhere.
    """

    def _load_checkpoint(self) -> None:
        """Loads the checkpoint as nerfstudio does, then the random streams saved with it."""
        super()._load_checkpoint()
        self.restore_random_state()

    def restore_random_state(self) -> None:
        """Sets the global random streams to those saved in the checkpoint named by --load-dir (its --load-step, else
        its newest) or --load-checkpoint; a checkpoint saved without them (older ones, nerfstudio's) leaves them."""
        path = self.config.load_checkpoint
        if self.config.load_dir is not None:
            load_dir = Path(self.config.load_dir)
            step = self.config.load_step
            if step is None:
                names = [n for n in os.listdir(load_dir) if n.startswith("step-") and n.endswith(".ckpt")]
                steps = [int(n[len("step-") : -len(".ckpt")]) for n in names]
                step = max(steps, default=None)
            path = None if step is None else load_dir / f"step-{step:09d}.ckpt"
        if path is not None and Path(path).exists():
            state = torch.load(path, map_location="cpu", weights_only=True).get("random")
            if state is not None:
                set_random_state(state)

    def checkpoint_extras(self) -> dict[str, Any]:
        """More state a subclass's checkpoints keep (read back with ``torch.load(weights_only=True)``); none here."""
        return {}

    def save_checkpoint(self, step: int) -> None:
        """Saves the model and optimisers as ``step-<step>.ckpt``, then deletes older checkpoints if configured.

        Raises:
            OSError: ENOSPC, with a sentence naming the checkpoint kept and how to resume, when the disk is full.
        """
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
            "random": random_state(),
            **self.checkpoint_extras(),
        }
        # Serialised in memory, then written by Python: torch's own file writer turns a failed write into a
        # RuntimeError that does not say the disk is full.
        buffer = io.BytesIO()
        torch.save(state, buffer)
        # The temporary file goes in the run folder: nerfstudio's loaders read every name in nerfstudio_models as
        # step-<n>.ckpt, so one left there by a killed run would stop ns-viewer and resumes.
        run = self.checkpoint_dir.parent
        try:
            atomic_write_bytes(path, buffer.getbuffer(), temporary_dir=run)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            kept = sorted(self.checkpoint_dir.glob("step-*.ckpt"))
            raise OSError(
                errno.ENOSPC,
                f"No space left on the disk to write the checkpoint {path} ("
                + (f"{kept[-1]} is kept intact" if kept else "no earlier checkpoint exists")
                + f"): free space on that disk and rerun with --load-dir {self.checkpoint_dir} to resume.",
            ) from error
        for stale in run.glob(".step-*.tmp.ckpt"):  # left by a run killed while saving
            stale.unlink(missing_ok=True)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != path:
                    old.unlink()
