"""The paper's ablations and an image-editing baseline, run on equal terms and measured (``avatarstudio ablate``).

Every method is a switch of the same edit (METHOD section 5): the same recon, keyframe rules, base model, edit
preset, step count and seed; only the named setting differs. Each run lives in its own nerfstudio folder under the
output and is reused when finished (resumed when interrupted), so an ablation can be grown a method at a time.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml
from nerfstudio.engine.trainer import TrainerConfig
from rich.console import Console

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.frontal import frontal_image_index
from avatarstudio_ns.edit.pipeline import DatasetUpdatePipelineConfig
from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    _fmt,
    _jsonable,
    collect_views,
    evaluate,
    load_pipeline,
    pipeline_outputs,
)
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, PromptSet, load_prompt_set
from avatarstudio_ns.eval.renders import orbit_path, render_rgb, write_video
from avatarstudio_ns.guidance.dataset_update import DatasetUpdateGuidanceConfig
from avatarstudio_ns.scripts.runs import (
    EDIT_BEHAVIOUR,
    base_model_weights,
    check_settings,
    edit_run_config,
    edit_steps,
    finished,
    run_dir,
    settings_digest,
    train_run,
)

CONSOLE = Console()


@dataclass(frozen=True)
class Method:
    """One column of the comparison: a name, what it is, and how it changes the edit's config."""

    name: str
    """Short name, used for run folders and on the command line."""
    label: str
    """How the table names it."""
    description: str
    """What differs from VT-SDS, with the paper's figure."""
    apply: Callable[[TrainerConfig], None]
    """Changes a copy of the edit preset's config in place."""
    personalization: str | None = "keyframes"
    """Which personalisation it uses (methods with the same one share its folder); None: none."""


def _vt_sds(config: TrainerConfig) -> None:
    pass


def _plain_sds(config: TrainerConfig) -> None:
    config.pipeline.guidance.use_personalized = False


def _single_identifier(config: TrainerConfig) -> None:
    config.pipeline.personalization.shared_identifier = True


def _no_time_stamps(config: TrainerConfig) -> None:
    config.pipeline.keyframes.time_aware = False


def _no_pretrained(config: TrainerConfig) -> None:
    config.pipeline.guidance.v_high = 0.0
    config.pipeline.guidance.k_timestep = 0


def _no_annealing(config: TrainerConfig) -> None:
    config.pipeline.guidance.anneal = "none"


def _whole_appearance(config: TrainerConfig) -> None:
    config.pipeline.model.trainable = "all"


def _dataset_update(config: TrainerConfig) -> None:
    old = config.pipeline
    config.pipeline = DatasetUpdatePipelineConfig(
        datamanager=old.datamanager,
        model=old.model,
        keyframes=old.keyframes,
        guidance=DatasetUpdateGuidanceConfig(
            base_model=old.guidance.base_model,
            dtype=old.guidance.dtype,
            vae_fp32=old.guidance.vae_fp32,
            seed=config.machine.seed,
        ),
        personalization=old.personalization,
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("vt-sds", "VT-SDS (ours)", "the preset: personalised keyframes, its v and K, annealed t_max", _vt_sds),
        Method("sds", "SDS", "base model only, no personalisation (the paper's 'original SDS')", _plain_sds, None),
        Method(
            "single-identifier",
            "one identifier",
            "DreamBooth-style: one identifier shared by all keyframes (Fig. 13)",
            _single_identifier,
            "single-identifier",
        ),
        Method(
            "no-time-stamps",
            "no time stamps",
            "keyframes are the cameras of the first frame only (Figs. 14-15)",
            _no_time_stamps,
            "no-time-stamps",
        ),
        Method("no-pretrained", "v = K = 0", "personalised model only, at every t (Fig. 16)", _no_pretrained),
        Method("no-annealing", "no annealing", "fixed t_max (Fig. 17)", _no_annealing),
        Method(
            "whole-appearance",
            "all of A trained",
            "the paper's optimised set: the whole appearance network, density included (ours trains the colour "
            "MLP and a colour-only copy of the hash grid)",
            _whole_appearance,
        ),
        Method(
            "dataset-update",
            "SDEdit + fit",
            "Instruct-NeRF2NeRF family: SDEdit the keyframe renders with the base model, fit, update every 10 steps",
            _dataset_update,
            None,
        ),
    )
}
"""The methods ``avatarstudio ablate`` compares, ours first."""

ABLATION_PROMPTS = PromptSet(
    prompts=tuple(
        DEFAULT_PROMPT_SET.find(p)
        for p in (
            "photo of a person with blue hair",
            "photo of a person with dark skin",
            "photo of a person with green eyes",
        )
    )
)
"""Default prompts: one each for hair, skin and eyes."""


@dataclass
class AblationConfig:
    """What to compare, on which avatar, with how much work."""

    recon: Path
    """config.yml of the reconstructed avatar (an ``avatarstudio-recon`` run of a synth capture)."""
    prompts: Path | None = None
    """Prompt set file (JSON or YAML, see avatarstudio_ns/eval/prompt_set.py); default: blue hair, dark skin,
    green eyes."""
    output: Path = Path("ablation")
    """Folder of the runs, the table (ablation.md, ablation.json) and one side-by-side video per prompt."""
    methods: tuple[str, ...] = tuple(METHODS)
    """Methods to run, by name: vt-sds, sds, single-identifier, no-time-stamps, no-pretrained, no-annealing,
    whole-appearance, dataset-update."""
    preset: Literal["fast", "paper"] = "fast"
    """Edit preset every method starts from: fast (avatarstudio-edit-fast, CPU) or paper (avatarstudio-edit)."""
    base_model: str = "builtin"
    """Base diffusion model: builtin, a local diffusers folder or a Hugging Face id."""
    steps: int | None = None
    """Edit iterations of every method; None: the preset's own length (the README's ablation table used 150 with the
    preset of that time)."""
    personalization_steps: int | None = None
    """Steps of each personalisation; None: the preset's."""
    seed: int = 0
    """Seed of every run (keyframe order, noise)."""
    train_only: bool = False
    """Only train the runs (e.g. to share methods between processes); no scores, table or videos."""
    video_frames: int = 24
    """Frames of each prompt's side-by-side video (an orbit while time advances)."""
    settings: EvalSettings = field(
        default_factory=lambda: EvalSettings(num_train_cameras=2, timestep_stride=4, clip_model=None)
    )
    """How the edits are rendered and measured."""


def slug(text: str) -> str:
    """A folder name for a prompt."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def edit_config(method: Method, prompt: str, config: AblationConfig, root: Path) -> TrainerConfig:
    """The edit preset's config with ``method``'s change, the prompt, the base model and the shared seed."""
    trainer = edit_run_config(config.preset, prompt, config.base_model, config.seed, None)
    if config.personalization_steps is not None:
        trainer.pipeline.personalization.steps = config.personalization_steps
    method.apply(trainer)
    if method.personalization is not None:
        trainer.pipeline.guidance.personalization_dir = root / "personalizations" / method.personalization
    return trainer


def _load_trainer_config(path: Path) -> TrainerConfig:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recon config.yml (give --recon <recon run>/config.yml).")
    return yaml.load(path.read_text(), Loader=yaml.Loader)


def methods_by_name(names: Sequence[str]) -> list[Method]:
    """The methods named, in that order; an unknown name is an error that lists the known ones."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHODS)}.")
    return [METHODS[n] for n in names]


TABLE_MEASURES: tuple[tuple[str, str, Callable[[dict], Any], bool, int], ...] = (
    ("identity PSNR (dB) ↑", "psnr", lambda e: e["identity"]["psnr"], True, 2),
    ("identity SSIM ↑", "ssim", lambda e: e["identity"]["ssim"], True, 3),
    ("fidelity hit ↑", "hit", lambda e: e["fidelity"]["hit_fraction_after"], True, 2),
    ("fidelity ΔE ↓", "delta_e", lambda e: e["fidelity"]["delta_e_after"], False, 1),
    ("time flicker ↓", "time_flicker", lambda e: (e["temporal"] or {}).get("target", {}).get("time_flicker"), False, 4),
    ("view flicker ↓", "view_flicker", lambda e: (e["temporal"] or {}).get("target", {}).get("view_flicker"), False, 4),
)
"""Columns of the table: title, JSON key, how to read it from an edit's scores, higher-is-better, digits."""


def ablation_rows(results: dict[str, dict[str, dict]]) -> dict[str, list[dict[str, Any]]]:
    """Per prompt, one row per method with the table's measures (plain numbers)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for prompt, per_method in results.items():
        rows[prompt] = []
        for name, scores in per_method.items():
            row = {"method": name, "label": METHODS[name].label if name in METHODS else name}
            for _, key, read, _, _ in TABLE_MEASURES:
                value = read(scores)
                row[key] = None if value is None else float(value)
            rows[prompt].append(row)
    return rows


def ablation_markdown(rows: dict[str, list[dict[str, Any]]], note: str = "") -> str:
    """The table: one block of rows per prompt; the best value of each measure within a prompt in bold."""
    header = ["prompt", "method"] + [title for title, *_ in TABLE_MEASURES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for prompt, prompt_rows in rows.items():
        best: dict[str, float] = {}
        for _, key, _, higher, _ in TABLE_MEASURES:
            values = [r[key] for r in prompt_rows if r[key] is not None and np.isfinite(r[key])]
            if values:
                best[key] = max(values) if higher else min(values)
        for i, row in enumerate(prompt_rows):
            cells = [prompt if i == 0 else "", row["label"]]
            for _, key, _, _, digits in TABLE_MEASURES:
                text = _fmt(row[key], digits)
                cells.append(f"**{text}**" if key in best and row[key] == best[key] else text)
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Identity: PSNR / SSIM of the edited vs the original render outside the prompt's target region. Fidelity: "
        "fraction of target pixels whose nearest named colour is the requested one, and CIELAB ΔE to it (on a synth "
        "capture, each named colour as the synth shows it under that pixel's light). Flicker: "
        "how much the edit (edited - original) varies on one canonical surface point across time / across views. "
        "Bold: the best of a prompt's methods."
    )
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _label_panel(image: np.ndarray, text: str, scale: int) -> np.ndarray:
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    header = np.full((14, big.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(header, text[: big.shape[1] // 6], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, big], axis=0)


def comparison_frames(panels: dict[str, list[np.ndarray]], scale: int = 2, gap: int = 4) -> list[np.ndarray]:
    """Frames with one labelled panel per method, side by side (original first)."""
    names = list(panels)
    frames = []
    for i in range(len(panels[names[0]])):
        row = [_label_panel(panels[n][i], n, scale) for n in names]
        spacer = np.full((row[0].shape[0], gap, 3), 255, dtype=np.uint8)
        parts = []
        for j, panel in enumerate(row):
            parts += [panel] if j == 0 else [spacer, panel]
        frames.append(np.concatenate(parts, axis=1))
    return frames


def _check_run_settings(run: Path, config: AblationConfig, trainer, steps: int, base_weights: str) -> None:
    """Records the settings a run is made with; refuses to reuse or resume a run made with other settings (a changed
    preset included: ``edit_settings`` is a digest of the run's whole edit config)."""
    settings = {
        "edit_settings": settings_digest(trainer, steps),
        "edit_behaviour": EDIT_BEHAVIOUR,
        "preset": config.preset,
        "base_model": config.base_model,
        "base_weights": base_weights,
        "steps": steps,
        "personalization_steps": config.personalization_steps,
        "seed": config.seed,
    }
    check_settings(run / "ablation_settings.json", settings, run)


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    """Trains every (prompt, method) run that is not finished, scores them and writes the table and videos."""
    methods = methods_by_name(config.methods)
    prompt_set = load_prompt_set(config.prompts) if config.prompts is not None else ABLATION_PROMPTS
    recon = _load_trainer_config(config.recon)
    data = recon.pipeline.datamanager.data or recon.pipeline.datamanager.dataparser.data
    checkpoints = config.recon.parent / "nerfstudio_models"
    if not any(checkpoints.glob("step-*.ckpt")):
        raise FileNotFoundError(f"{checkpoints}: no checkpoint; finish the recon first.")
    root = config.output.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    # Fails (or warns of prompt words the model never read) now, not after the first hour of runs.
    base_weights = base_model_weights(config.base_model, [prompt.prompt for prompt in prompt_set.prompts])
    steps = edit_steps(config.preset, config.steps)

    runs: dict[str, dict[str, Path]] = {}
    for prompt in prompt_set.prompts:
        runs[prompt.prompt] = {}
        for method in methods:
            trainer = edit_config(method, prompt.prompt, config, root)
            run = run_dir(root, slug(prompt.prompt), trainer.method_name, method.name)
            _check_run_settings(run, config, trainer, steps, base_weights)
            CONSOLE.rule(f"{method.label}: {prompt.prompt}")
            if finished(run, steps):
                CONSOLE.print(f"Reusing {run}")
            else:
                train_run(
                    trainer,
                    data,
                    root,
                    steps,
                    load_dir=checkpoints,
                    experiment=slug(prompt.prompt),
                    name=method.name,
                )
            runs[prompt.prompt][method.name] = run
    if config.train_only:
        return {"runs": {p: {m: str(r) for m, r in rs.items()} for p, rs in runs.items()}}

    original = load_pipeline(config.recon)
    train_outputs, val_outputs = pipeline_outputs(original)
    views = collect_views(train_outputs, val_outputs, config.settings)
    dataset = original.datamanager.train_dataset
    path = orbit_path(dataset.cameras, frontal_image_index(dataset), config.video_frames)
    original_frames = render_rgb(original.model, path)
    results: dict[str, dict[str, dict]] = {}
    videos = {}
    for prompt in prompt_set.prompts:
        loaded = {name: load_pipeline(run / "config.yml") for name, run in runs[prompt.prompt].items()}
        report = evaluate(
            original.model,
            [(prompt, pipeline.model, name) for name, pipeline in loaded.items()],
            views,
            prompt_set,
            config.settings,
            original_name=str(config.recon),
        )
        results[prompt.prompt] = {edit["edited"]: edit for edit in report["edits"]}
        panels = {"original": original_frames}
        panels.update({METHODS[n].label: render_rgb(p.model, path) for n, p in loaded.items()})
        videos[prompt.prompt] = str(write_video(root / f"{slug(prompt.prompt)}.mp4", comparison_frames(panels), fps=8))
        del loaded

    rows = ablation_rows(results)
    settings_note = (
        f"Avatar `{config.recon}`; preset {config.preset}, base model {config.base_model}, {steps} edit steps, "
        f"seed {config.seed}; {len(views)} views ({config.settings.num_train_cameras} training cameras + held-out, "
        f"every {config.settings.timestep_stride}th frame). Methods: "
        + "; ".join(f"{m.label}: {m.description}" for m in methods)
        + "."
    )
    summary = {
        "recon": str(config.recon),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
        "methods": {m.name: {"label": m.label, "description": m.description} for m in methods},
        "rows": rows,
        "videos": videos,
        "scores": results,
    }
    atomic_write_text(root / "ablation.json", json.dumps(_jsonable(summary), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(root / "ablation.md", ablation_markdown(rows, settings_note))
    return summary


@dataclass
class AblateCommand(AblationConfig):
    """Edit one avatar with every method on the same prompts, seeds and budget, then score identity, prompt
    fidelity and temporal consistency of each: writes ablation.md (the table), ablation.json and a side-by-side
    video per prompt. Finished runs are reused, interrupted ones resumed."""

    def main(self) -> None:
        """Runs the ablation and prints the table."""
        # heavy (rich.markdown loads markdown-it and pygments, ~86 modules): imported when the table is printed, so
        # --help stays fast
        from rich.markdown import Markdown

        run_ablation(self)
        if not self.train_only:
            table = (self.output / "ablation.md").read_text(encoding="utf-8")
            CONSOLE.print(Markdown(table))
            CONSOLE.print(f"Table: {self.output / 'ablation.md'}; videos: {self.output}/*.mp4")
