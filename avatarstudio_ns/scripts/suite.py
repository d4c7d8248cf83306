"""The edit suite: several synthetic identities, each edited with several prompts by one default configuration.

One avatar and one prompt say little about an edit method; the suite makes a few identities that differ in hair
colour, skin tone and hair style, reconstructs each once, edits each with every prompt of a prompt set (skipping a
prompt that asks for what the identity already has) using the edit preset unchanged, and scores every saved
checkpoint of every edit, so the same run also says how many steps each prompt needs. Every stage is reused when
finished and resumed when interrupted; scores are cached per checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro
from nerfstudio.engine.trainer import TrainerConfig
from rich.console import Console

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.synth import CaptureConfig, render_capture
from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    EvalViews,
    _fmt,
    _jsonable,
    collect_views,
    evaluate,
    exact_recolour_flicker,
    load_pipeline,
    pipeline_outputs,
)
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, EditPrompt, PromptSet, load_prompt_set
from avatarstudio_ns.scripts.ablate import METHODS, TABLE_MEASURES, Method, methods_by_name, slug
from avatarstudio_ns.scripts.runs import (
    EDIT_BEHAVIOUR,
    base_model_weights,
    check_settings,
    checkpoint_steps,
    edit_run_config,
    edit_steps,
    finished,
    run_dir,
    settings_digest,
    train_run,
)
from method_configs.recon import avatarstudio_recon_cpu

CONSOLE = Console()


@dataclass(frozen=True)
class SuiteIdentity:
    """One synthetic identity of the suite, as ``avatarstudio synth`` options."""

    name: str
    """Folder name."""
    seed: int
    """Seed of the performance (and of the identity when ``random_identity``)."""
    random_identity: bool = False
    """Draw the identity from the seed instead of starting from the default identity."""
    overrides: tuple[tuple[str, str], ...] = ()
    """Attribute overrides, as (CaptureConfig field, value) pairs."""


SUITE_IDENTITIES: dict[str, SuiteIdentity] = {
    i.name: i
    for i in (
        # The default identity: short brown hair, light skin, brown eyes.
        SuiteIdentity("brown-short-light", seed=0),
        # Seed 1's random identity: long blue hair, tan skin, hazel eyes, black lips.
        SuiteIdentity("blue-long-tan", seed=1, random_identity=True),
        SuiteIdentity(
            "blonde-bob-dark",
            seed=2,
            overrides=(("hair_color", "blonde"), ("skin_tone", "dark"), ("hair_style", "bob"), ("eye_color", "blue")),
        ),
    )
}
"""Identities the suite can make, by name: different hair colours, skin tones and hair styles."""

SUITE_PROMPTS = PromptSet(
    prompts=tuple(
        DEFAULT_PROMPT_SET.find(f"photo of a person with {p}")
        for p in (
            "blue hair",
            "red hair",
            "white hair",
            "dark skin",
            "pale skin",
            "green skin",
            "green eyes",
            "red lips",
        )
    )
)
"""Default prompts: three hair colours, two skin tones the synth knows, a skin colour no synth head has, an eye
colour and a lip colour (the small regions)."""

TARGETS = {"psnr": 30.0, "hit": 0.9}
"""What an edit should reach: identity PSNR outside the target (dB) and the fraction of target pixels of the
requested colour."""


@dataclass
class SuiteConfig:
    """Which identities and prompts, how large, and where."""

    output: Path = Path("edit_suite")
    """Folder of the captures, runs, cached scores and the tables (suite.md, suite.json)."""
    identities: tuple[str, ...] = tuple(SUITE_IDENTITIES)
    """Identities to make and edit, by name: brown-short-light, blue-long-tan, blonde-bob-dark. Two processes given
    different identities can share one output folder; a last run over all of them writes the whole table. On a CPU,
    give each process its own cores (``taskset -c 0 avatarstudio suite ...``): the CPU presets train on two threads,
    and two suites sharing two cores edited ten times slower (5-7 s a step against 0.5)."""
    prompts: Path | None = None
    """Prompt set file (JSON or YAML, see avatarstudio_ns/eval/prompt_set.py); default: blue, red and white hair,
    dark, pale and green skin, green eyes, red lips."""
    preset: Literal["fast", "paper"] = "fast"
    """Edit preset, used unchanged: fast (avatarstudio-edit-fast, CPU) or paper (avatarstudio-edit)."""
    methods: tuple[str, ...] = ("vt-sds",)
    """Methods to edit with, by name (those of ``avatarstudio ablate``: vt-sds, sds, single-identifier,
    no-time-stamps, no-pretrained, no-annealing, whole-appearance, dataset-update); default: the preset's own
    method. With several, the suite is the ablation on every identity: suite.md adds each method's mean and worst,
    and methods run one after the other over all identities, so an interrupted suite has whole methods."""
    edit_args: str = ""
    """ns-train options applied to the preset, to measure a change of it on the whole suite, e.g.
    ``--edit-args="--pipeline.guidance.k-timestep 600"`` (the = keeps the leading dashes a value); empty: the preset
    unchanged. Give such a suite its own --output: runs are never reused under other settings."""
    base_model: str = "builtin"
    """Base diffusion model: builtin, a local diffusers folder or a Hugging Face id."""
    num_cameras: int = 8
    """Cameras of each synthetic capture."""
    num_frames: int = 96
    """Frames of each performance."""
    resolution: int = 64
    """Image side of each capture, in pixels."""
    recon_steps: int = 1500
    """Iterations of each recon (avatarstudio-recon-cpu)."""
    edit_steps: int | None = None
    """Iterations of each edit; None: the preset's own."""
    checkpoint_every: int = 100
    """Steps between the saved checkpoints of an edit that are scored (steps to quality)."""
    seed: int = 0
    """Seed of the training runs."""
    train_only: bool = False
    """Only make the captures and train the runs; no scores or table."""
    settings: EvalSettings = field(
        default_factory=lambda: EvalSettings(num_train_cameras=3, timestep_stride=24, clip_model=None)
    )
    """How the edits are rendered and measured."""


def applies(prompt: EditPrompt, identity: SuiteIdentity) -> bool:
    """Whether ``prompt`` asks for a change on ``identity`` (an identity with blue hair is not asked for blue hair)."""
    attributes = _capture_config(identity, Path("."), SuiteConfig()).attributes()
    return all(getattr(attributes, key) != value for key, value in (prompt.expected or {}).items())


def _capture_config(identity: SuiteIdentity, output: Path, config: SuiteConfig) -> CaptureConfig:
    return CaptureConfig(
        output=output,
        num_cameras=config.num_cameras,
        num_frames=config.num_frames,
        resolution=config.resolution,
        seed=identity.seed,
        random_identity=identity.random_identity,
        progress=False,
        **dict(identity.overrides),
    )


def edit_config(
    prompt: str, identity: str, config: SuiteConfig, root: Path, method: Method = METHODS["vt-sds"]
) -> TrainerConfig:
    """The edit preset's config, unchanged but for the prompt, base model, seed, ``method``'s change (none for the
    preset's own) and where its personalisation lives (one per identity and kind of personalisation, shared by the
    prompts and methods that use it)."""
    trainer = edit_run_config(config.preset, prompt, config.base_model, config.seed, None)
    method.apply(trainer)
    if method.personalization is not None:
        kind = "" if method.personalization == "keyframes" else f"-{method.personalization}"
        trainer.pipeline.guidance.personalization_dir = root / "personalizations" / f"{identity}{kind}"
    if config.edit_args:
        trainer = tyro.cli(type(trainer), default=trainer, args=shlex.split(config.edit_args))
    # Every checkpoint is kept: the suite scores each of them.
    trainer.save_only_latest_checkpoint = False
    return trainer


def edit_run(root: Path, identity: str, prompt: str, trainer: TrainerConfig, method: Method) -> Path:
    """Folder of an edit run: named by its prompt, and by its method too unless it is the preset's own (so the suite
    of one method and the ablation share those runs)."""
    name = slug(prompt) if method.name == "vt-sds" else f"{slug(prompt)}--{method.name}"
    return run_dir(root, identity, trainer.method_name, name)


def _timed_train(run: Path, **train_args: Any) -> None:
    """Runs :func:`~avatarstudio_ns.scripts.runs.train_run` and adds its wall time to the run's record (a resumed run
    adds up its sittings)."""
    record = run / "suite_time.json"
    start = time.perf_counter()
    train_run(**train_args)
    seconds = time.perf_counter() - start
    before = json.loads(record.read_text()) if record.is_file() else {"seconds": 0.0, "sittings": 0}
    after = {"seconds": before["seconds"] + seconds, "sittings": before["sittings"] + 1}
    atomic_write_text(record, json.dumps(after) + "\n")


def _load_checkpoint(pipeline, run: Path, step: int) -> None:
    """Loads the weights of the run's checkpoint at ``step`` into ``pipeline`` (one of this run, for rendering)."""
    loaded = torch.load(run / "nerfstudio_models" / f"step-{step:09d}.ckpt", map_location="cpu", weights_only=False)
    pipeline.load_pipeline(loaded["pipeline"], loaded["step"])
    pipeline.eval()


def make_avatar(identity: SuiteIdentity, config: SuiteConfig, root: Path) -> tuple[Path, Path]:
    """The identity's capture and finished recon run, made unless already there; returns (capture, recon run)."""

    capture = root / "captures" / identity.name
    settings = {
        "identity": dataclasses.asdict(identity),
        "num_cameras": config.num_cameras,
        "num_frames": config.num_frames,
        "resolution": config.resolution,
        "recon_steps": config.recon_steps,
        "recon_settings": settings_digest(avatarstudio_recon_cpu.config, config.recon_steps),
    }
    check_settings(root / "captures" / f"{identity.name}.json", _jsonable(settings), capture)
    if not (capture / "transforms_train.json").exists():
        CONSOLE.print(f"Rendering the capture of {identity.name}")
        render_capture(_capture_config(identity, capture, config))
    recon = run_dir(root, identity.name, "avatarstudio-recon-cpu", "recon")
    if not finished(recon, config.recon_steps):
        CONSOLE.rule(f"recon: {identity.name}")
        _timed_train(
            recon,
            config=avatarstudio_recon_cpu.config,
            data=capture,
            root=root,
            steps=config.recon_steps,
            experiment=identity.name,
            name="recon",
        )
    return capture, recon


def cached_scores(run: Path, settings: EvalSettings) -> dict[int, dict]:
    """The scores in the run's cache, per checkpoint step, if they were measured with ``settings`` (else none)."""
    cache = run / "suite_scores.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("settings") != _jsonable(dataclasses.asdict(settings)):
        return {}
    return {int(k): v for k, v in cached.get("steps", {}).items()}


def scored_through(run: Path, steps: int, settings: EvalSettings) -> bool:
    """Whether the run's score cache holds its last step, measured with ``settings``: its scores are all the suite
    needs, so a run whose checkpoints are gone (the small JSON files of a suite kept, e.g. in a repository, and copied
    into a fresh output folder) is not trained again."""
    return steps - 1 in cached_scores(run, settings)


def score_run(
    run: Path, original, views, prompt: EditPrompt, prompt_set: PromptSet, settings: EvalSettings
) -> dict[int, dict]:
    """Scores of every saved checkpoint of an edit run, read from its cache or measured and cached (a cache made
    with other evaluation settings is measured again)."""
    cache = run / "suite_scores.json"
    recorded = _jsonable(dataclasses.asdict(settings))
    scores = cached_scores(run, settings)
    edited = None  # loaded once, then each checkpoint's weights into it
    for step in checkpoint_steps(run):
        if step in scores:
            continue
        CONSOLE.print(f"Scoring {run} at step {step}")
        if edited is None:
            edited = load_pipeline(run / "config.yml")
        _load_checkpoint(edited, run, step)
        report = evaluate(original.model, [(prompt, edited.model, str(run))], views, prompt_set, settings)
        scores[step] = _jsonable(report["edits"][0])
        record = {"settings": recorded, "steps": {str(k): v for k, v in sorted(scores.items())}}
        atomic_write_text(cache, json.dumps(record, indent=1) + "\n")
    return scores


SUITE_MEASURES: tuple[tuple[str, str, Any, bool, int], ...] = TABLE_MEASURES + (
    ("region IoU ↑", "region_iou", lambda e: e.get("region_iou"), True, 2),
)
"""Measures of an edit: the ablation's, and the edit region's IoU."""

SUITE_COLUMNS: tuple[tuple[str, str, bool, int], ...] = tuple((t, k, h, d) for t, k, _, h, d in SUITE_MEASURES) + (
    ("exact recolour time flicker", "exact_time_flicker", False, 4),
    ("exact recolour view flicker", "exact_view_flicker", False, 4),
)
"""Columns of the table (title, row key, higher-is-better, digits): the edit's measures, then the flicker of the
synth's own exact recolouring of the prompt's target at the same views (the flicker measure's floor there)."""


def render_sized(views: EvalViews) -> EvalViews:
    """The views at the size their cameras render (collect_views scales the cameras, not the labels)."""
    return views.resized(int(views.cameras[0].height[0, 0]), int(views.cameras[0].width[0, 0]))


def meets_targets(row: dict[str, Any]) -> bool:
    """Whether scores reach :data:`TARGETS`."""
    return all(row.get(key) is not None and row[key] >= value for key, value in TARGETS.items())


def suite_row(scores: dict[int, dict]) -> dict[str, Any]:
    """One table row: the last checkpoint's measures, and the first checkpoint step (counted from 1) that meets the
    targets (None if none does)."""
    last = max(scores)
    row: dict[str, Any] = {}
    for _, key, read, _, _ in SUITE_MEASURES:
        value = read(scores[last])
        row[key] = None if value is None else float(value)
    row["steps_to_target"] = None
    for step in sorted(scores):
        checkpoint = {key: read(scores[step]) for _, key, read, _, _ in SUITE_MEASURES}
        if meets_targets(checkpoint):
            row["steps_to_target"] = step + 1
            break
    row["per_step"] = {
        str(step + 1): {key: read(scores[step]) for _, key, read, _, _ in SUITE_MEASURES[:4]} for step in sorted(scores)
    }
    return row


def _summary_cells(rows: Sequence[dict[str, Any]], label: str) -> list[str]:
    """Cells of a summary row: the mean or the worst of each measure over ``rows``, seconds and targets reached."""
    cells = []
    for _, key, higher, digits in SUITE_COLUMNS:
        values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
        if not values:
            cells.append("-")
            continue
        value = float(np.mean(values)) if label == "mean" else (min(values) if higher else max(values))
        cells.append(_fmt(value, digits))
    seconds = [r["seconds"] for r in rows if r.get("seconds") is not None]
    cells.append(_fmt(float(np.mean(seconds)) if label == "mean" else max(seconds), 0) if seconds else "-")
    reached = sum(r["steps_to_target"] is not None for r in rows)
    cells.append(f"{reached}/{len(rows)} reached" if label == "mean" else "")
    return cells


def suite_markdown(rows: Sequence[dict[str, Any]], note: str = "") -> str:
    """The table: one row per (identity, prompt), then the mean and worst of each measure; with several methods, a
    method column and the mean and worst of each method."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(row.get("method", METHODS["vt-sds"].label), []).append(row)
    several = len(by_method) > 1
    header = ["identity", "prompt"] + (["method"] if several else []) + [t for t, *_ in SUITE_COLUMNS]
    header += ["edit s", "steps to target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["identity"], row["prompt"].removeprefix("photo of a person with ")]
        cells += [row["method"]] if several else []
        cells += [_fmt(row.get(key), digits) for _, key, _, digits in SUITE_COLUMNS]
        cells += [_fmt(row.get("seconds"), 0), str(row["steps_to_target"] or "not reached")]
        lines.append("| " + " | ".join(cells) + " |")
    for method, group in by_method.items():
        for label in ("mean", "worst"):
            cells = [f"**{label}**", ""] + ([f"**{method}**"] if several else []) + _summary_cells(group, label)
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Targets: identity PSNR >= {TARGETS['psnr']:g} dB outside the prompt's target region and >= "
        f"{TARGETS['hit']:.0%} of target pixels of the requested colour. Measures at the last checkpoint; steps to "
        "target: the first saved checkpoint that meets both. Identity: PSNR / SSIM of edited vs original renders "
        "outside the target. Hit / ΔE: fraction of target pixels whose nearest named colour is the requested one / "
        "CIELAB distance to it, each named colour as the synth shows it under that pixel's light. Flicker: how much "
        "the edit varies on one canonical surface point across time / views; exact recolour flicker: that of the "
        "synth's own recolouring of the target in the requested colour at the same views, the floor an edit can reach. "
        "Region IoU: the edit region against the synth's labels of the target.",
    ]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def run_suite(config: SuiteConfig) -> dict[str, Any]:
    """Makes every identity's avatar, trains every edit that is not finished, scores them and writes the table."""
    unknown = [n for n in config.identities if n not in SUITE_IDENTITIES]
    if unknown:
        raise ValueError(f"Unknown identity(ies) {unknown}; choose from {list(SUITE_IDENTITIES)}.")
    prompt_set = load_prompt_set(config.prompts) if config.prompts is not None else SUITE_PROMPTS
    steps = edit_steps(config.preset, config.edit_steps)
    root = config.output.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    # Fails (or warns of prompt words the model never read) now, not after the first hour of runs.
    base_weights = base_model_weights(config.base_model, [prompt.prompt for prompt in prompt_set.prompts])

    methods = methods_by_name(config.methods)
    avatars = {name: make_avatar(SUITE_IDENTITIES[name], config, root) for name in config.identities}
    originals: dict[str, tuple[Any, EvalViews]] = {}  # per identity, its recon and views, loaded when first scored
    rows = []
    for method in methods:
        for name in config.identities:
            capture, recon = avatars[name]
            for prompt in (p for p in prompt_set.prompts if applies(p, SUITE_IDENTITIES[name])):
                trainer = edit_config(prompt.prompt, name, config, root, method)
                run = edit_run(root, name, prompt.prompt, trainer, method)
                record = {
                    "edit_settings": settings_digest(trainer, steps),
                    "edit_behaviour": EDIT_BEHAVIOUR,
                    "base_model": config.base_model,
                    "base_weights": base_weights,
                    "steps": steps,
                }
                check_settings(run / "suite_settings.json", record, run)
                if not finished(run, steps) and not scored_through(run, steps, config.settings):
                    CONSOLE.rule(f"{name}: {prompt.prompt} ({method.label})")
                    _timed_train(
                        run,
                        config=trainer,
                        data=capture,
                        root=root,
                        steps=steps,
                        load_dir=recon / "nerfstudio_models",
                        experiment=name,
                        name=run.name,
                        steps_per_save=config.checkpoint_every,
                    )
                if config.train_only:
                    continue
                # Scored as soon as it is trained, so an interrupted suite keeps every finished edit's scores.
                if name not in originals:
                    original = load_pipeline(recon / "config.yml")
                    # At the renders' size from the start, so every scoring reuses one floor per prompt.
                    views = render_sized(collect_views(*pipeline_outputs(original), config.settings))
                    originals[name] = (original, views)
                original, views = originals[name]
                row = {"identity": name, "prompt": prompt.prompt, "method": method.label, "run": str(run)}
                row.update(suite_row(score_run(run, original, views, prompt, prompt_set, config.settings)))
                floor = exact_recolour_flicker(views, prompt, config.settings.voxel_size)
                row["exact_time_flicker"] = None if floor is None else floor.time_flicker
                row["exact_view_flicker"] = None if floor is None else floor.view_flicker
                timing = run / "suite_time.json"
                row["seconds"] = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
                rows.append(row)
    del originals
    if config.train_only:
        return {}
    change = f"with {config.edit_args}" if config.edit_args else "unchanged"
    note = (
        f"Preset {config.preset} {change}, base model {config.base_model}, {steps} edit steps (scored every "
        f"{config.checkpoint_every}), seed {config.seed}; captures {config.num_cameras} cameras x {config.num_frames} "
        f"frames x {config.resolution} px, recon {config.recon_steps} steps; views: "
        f"{config.settings.num_train_cameras} training cameras + the held-out one, every "
        f"{config.settings.timestep_stride}th frame. A prompt is left out for an identity that already has what it "
        "asks for."
    )
    if len(methods) > 1:
        note += " Methods: " + "; ".join(f"{m.label}: {m.description}" for m in methods) + "."
    summary = {
        "config": _jsonable(dataclasses.asdict(config)),
        "identities": {n: dataclasses.asdict(SUITE_IDENTITIES[n]) for n in config.identities},
        "methods": {m.name: {"label": m.label, "description": m.description} for m in methods},
        "targets": TARGETS,
        "rows": rows,
    }
    atomic_write_text(
        root / "suite.json", json.dumps(_jsonable(summary), indent=2, ensure_ascii=False, default=str) + "\n"
    )
    atomic_write_text(root / "suite.md", suite_markdown(rows, note))
    return summary


@dataclass
class SuiteCommand(SuiteConfig):
    """Make synthetic identities that differ in hair colour, skin tone and hair style, reconstruct each, edit each
    with every prompt of a prompt set using the edit preset unchanged, and score every saved checkpoint: writes
    suite.md (the table, with the mean and worst of each measure and the steps each edit needed to reach the
    targets) and suite.json. Finished stages are reused, interrupted ones resumed, scores cached per checkpoint."""

    def main(self) -> None:
        """Runs the suite and prints the table."""
        from rich.markdown import Markdown  # heavy for what it does (markdown-it, pygments): only to print the table

        run_suite(self)
        if not self.train_only:
            CONSOLE.print(Markdown((self.output / "suite.md").read_text(encoding="utf-8")))
            CONSOLE.print(f"Table: {self.output / 'suite.md'}; scores: {self.output / 'suite.json'}")
