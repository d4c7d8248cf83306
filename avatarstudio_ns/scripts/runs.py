"""nerfstudio training runs started from Python, in folders that make them resumable and reusable.

The demo and the ablation run many ``ns-train``-equivalent jobs; each lives in ``<root>/runs/<experiment>/<method>/
<name>``, is skipped when its last checkpoint exists, and resumes from its newest checkpoint when interrupted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from nerfstudio.engine.trainer import TrainerConfig

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.guidance.loading import load_diffusion, warn_if_unknown_words
from avatarstudio_ns.guidance.personalization.finetune import weights_fingerprint
from method_configs.edit import avatarstudio_edit, avatarstudio_edit_fast


def run_dir(root: Path, experiment: str, method: str, name: str) -> Path:
    """Folder of a run (nerfstudio's ``output_dir / experiment_name / method_name / timestamp``)."""
    return Path(root) / "runs" / experiment / method / name


EDIT_BEHAVIOUR = 2
"""Version of what an edit does beyond its settings, recorded with every edit run the suite, the ablation and the demo
keep (a run recorded with another version is not reused as today's).

Raise it with any change of the code that alters an edit's result without changing its config, so the settings digest
cannot see it (a fixed defect, a changed rule). 1: until 2026-12-06; 2: the edit region fitted on keyframe renders
without sample jitter (``AvatarEditModel.canonical_surface``).
"""


def settings_digest(config: TrainerConfig, steps: int) -> str:
    """A short digest of what decides a run's result: its pipeline and optimiser settings and its length.

    The capture path and the personalisation folder are left out, so the digest does not change with how a folder
    is spelled or where it was moved; so are the modules of the config classes (a class tag keeps only its name),
    so moving a class changes no digest, and the folder option keeps the name it had when the first runs were
    recorded (``personalization``), so renaming it changes none either.
    """
    config = copy.deepcopy(config)
    fit_schedules(config, steps)  # digest the schedules the run will use
    pipeline = config.pipeline
    pipeline.datamanager.data = None
    pipeline.datamanager.dataparser.data = Path(".")
    if hasattr(pipeline, "guidance") and hasattr(pipeline.guidance, "personalization_dir"):
        pipeline.guidance.personalization_dir = None
    settings = yaml.dump({"pipeline": pipeline, "optimizers": config.optimizers, "steps": steps})
    settings = settings.replace("personalization_dir: null", "personalization: null")
    settings = re.sub(r"(!!python/[\w/]+:)[\w.]*\.(\w+)", r"\1\2", settings)
    return hashlib.sha1(settings.encode()).hexdigest()[:10]


def base_model_weights(base_model: str, prompts: Sequence[str] = ()) -> str:
    """Loads the base diffusion model and returns a short hash of its weights.

    Loading first makes a missing model fail, and ``prompts`` with words the model never read warn, before hours of
    runs. The hash goes into the record of every edit run next to the model's name, because the name does not say
    which weights: ``builtin`` names whatever model the installed version ships, and a local folder can be replaced.
    A run made with other weights is then not reused.
    """
    base = load_diffusion(base_model, "cpu")
    for prompt in prompts:
        warn_if_unknown_words(base, prompt)
    return weights_fingerprint(base)[:12]


def check_settings(record: Path, settings: dict, folder: Path) -> bool:
    """Records the settings ``folder`` is made with in ``record``, or checks them against the recorded ones.

    Returns:
        Whether a record already existed (False: it was written now).

    Raises:
        ValueError: when the recorded settings differ, so what is in ``folder`` must not be reused.
    """
    if not record.is_file():
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(settings, indent=2) + "\n")
        return False
    before = json.loads(record.read_text(encoding="utf-8"))
    if before != settings:
        changed = ", ".join(f"{k}: {before.get(k)} -> {v}" for k, v in settings.items() if before.get(k) != v)
        raise ValueError(
            f"{folder} was made with other settings ({changed}); give another --output to keep both, or delete "
            f"{folder} to redo it."
        )
    return True


def fit_schedules(config: TrainerConfig, steps: int) -> None:
    """Stretches or shrinks the learning-rate schedules of ``config`` that have a ``max_steps`` to end at ``steps``
    (in place).

    A preset's schedules end at the preset's length; a shorter run would stop half-way down its decay.
    """
    for group in config.optimizers.values():
        scheduler = group.get("scheduler")
        if scheduler is not None and hasattr(scheduler, "max_steps"):
            scheduler.max_steps = steps


def edit_preset(preset: str):
    """The edit preset's method specification: "fast" (avatarstudio-edit-fast) or "paper" (avatarstudio-edit)."""
    return avatarstudio_edit_fast if preset == "fast" else avatarstudio_edit


def edit_steps(preset: str, steps: int | None) -> int:
    """Iterations of an edit: ``steps``, or the preset's own length when None (the preset is the single source)."""
    return steps if steps is not None else edit_preset(preset).config.max_num_iterations


def edit_run_config(preset: str, prompt: str, base_model: str, seed: int, personalization: Path | None):
    """A copy of an edit preset's config, unchanged but for the prompt, the base model, one seed for the trainer,
    the keyframe order and the personalisation, and the folder the personalisation is cached in."""
    trainer = copy.deepcopy(edit_preset(preset).config)
    trainer.machine.seed = seed
    trainer.pipeline.model.prompt = prompt
    trainer.pipeline.guidance.base_model = base_model
    trainer.pipeline.datamanager.seed = seed
    trainer.pipeline.personalization.seed = seed
    if personalization is not None:
        trainer.pipeline.guidance.personalization_dir = personalization
    return trainer


def checkpoint_steps(run: Path) -> list[int]:
    """Steps of the checkpoints a run has saved, in order."""
    return sorted(int(p.stem.split("-")[1]) for p in (Path(run) / "nerfstudio_models").glob("step-*.ckpt"))


def finished(run: Path, steps: int) -> bool:
    """Whether the run saved its last step's checkpoint."""
    return (run / "nerfstudio_models" / f"step-{steps - 1:09d}.ckpt").exists()


def train_run(
    config: TrainerConfig,
    data: Path,
    root: Path,
    steps: int,
    load_dir: Optional[Path] = None,
    experiment: str = "avatar",
    name: str = "demo",
    steps_per_save: Optional[int] = None,
) -> Path:
    """Runs nerfstudio's trainer (no viewer) into :func:`run_dir`; resumes a partial run; returns the run folder.

    Args:
        config: The method's trainer config (copied, not changed); its learning-rate schedules are fitted to
            ``steps``.
        data: The capture.
        root: Folder the ``runs`` tree goes under.
        steps: Total iterations of the run.
        load_dir: Checkpoints to start from (an edit's recon) when the run has none of its own yet.
        experiment: nerfstudio experiment name.
        name: nerfstudio timestamp, fixed so a rerun finds the run.
        steps_per_save: Steps between checkpoints; default a tenth of the run (at least 100).
    """
    config = copy.deepcopy(config)
    config.pipeline.datamanager.data = data
    config.output_dir = Path(root) / "runs"
    config.experiment_name = experiment
    config.timestamp = name
    config.max_num_iterations = steps
    fit_schedules(config, steps)
    config.steps_per_save = steps_per_save or max(100, steps // 10)
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.vis = "tensorboard"  # the viewer would keep the process alive after training
    run = config.get_base_dir()
    saved = checkpoint_steps(run)
    config.load_dir = run / "nerfstudio_models" if saved else load_dir
    if saved:
        # A resumed run continues its own step count; keep the total at ``steps``.
        config.max_num_iterations = max(steps - (saved[-1] + 1), 1)
    if not (run / "config.yml").exists():
        # A resumed edit keeps the config.yml its first start wrote (with the recon's architecture).
        config.save_config()
    # Seeded as ns-train seeds a run, whatever ran before it in this process: a rerun that reuses the finished runs
    # before it trains this one as an uninterrupted pass did (nerfstudio's masked ray sampling draws from Python's
    # random module, which nothing else seeds).
    random.seed(config.machine.seed)
    np.random.seed(config.machine.seed)
    torch.manual_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return run
