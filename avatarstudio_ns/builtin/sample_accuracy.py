"""Does the built-in model follow its captions? Sample it and let the attribute probe judge the samples.

Reference figures come first: the probe's accuracy on new exact renders, and on the same renders after a
VAE round trip (the best a sample decoded by this VAE could score), per attribute. Then the model is sampled
through the standard ``StableDiffusionPipeline`` with one prompt per held-out pair (two attribute values never
rendered together for training), plus seen prompts that name each attribute, such as the demo's "photo of a
person with blue hair".

A colour is only judged where its region shows: on real renders where the rendered labels show it, on samples
where the probe's own segmentation finds it (a sample seen from behind has no eye colour). The share of samples
that show each region is reported with the accuracy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from jaxtyping import Float
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table
from torch import Tensor

from avatarstudio_ns.atomic import atomic_save, atomic_write_text
from avatarstudio_ns.builtin.head_images import (
    TABLES,
    HeadDatasetConfig,
    HeldoutPair,
    build_dataset,
    check_pairs,
    describe,
    is_heldout,
)
from avatarstudio_ns.builtin.probe import PROBED, REGIONS, ProbeConfig, ProbeEnsemble, train_probe, visible_regions
from avatarstudio_ns.builtin.sitting import Sitting
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, load_training_set, training_device
from avatarstudio_ns.threads import torch_threads

SEEN_PROMPTS: tuple[dict[str, str], ...] = (
    {"hair": "blue"},
    {"hair": "brown", "skin": "light"},
    {"hair": "blonde", "skin": "dark"},
    {"hair": "black", "skin": "pale", "eyes": "blue"},
    {"eyes": "green"},
    {"lips": "red"},
    {"hair": "brown", "style": "long", "lips": "purple"},
    {"hair": "blonde", "style": "short", "brows": "black"},
    {"eyes": "grey", "lips": "pink"},
    {"hair": "red", "style": "bob"},
)
"""Attribute values named together by seen prompts (no held-out pair among them): the demo's "blue hair", the
first model's three, and at least one naming each of the other attributes. The prompt is ``describe`` of each."""


@dataclass
class EvalConfig:
    """How the trained model is scored."""

    eval_identities: int = 160
    """Identities of the held-out real renders (new seed, every attribute combination allowed)."""
    samples_per_prompt: int = 8
    """Samples per prompt."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale."""
    inference_steps: int = 50
    """DDIM steps per sample."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """The probes' training."""
    probe_seeds: tuple[int, ...] = (0, 1, 2)
    """One probe is trained per seed and they judge together (``ProbeEnsemble``): a single probe's reading of
    samples moves by tens of points with its seed. Records before 2026-12-06 were judged by the seed-0 probe
    alone (``--evaluation.probe-seeds 0``)."""
    grid_path: Path | None = None
    """Where the sample grid is saved; None: ``samples.jpg`` in the work folder, beside ``metrics.json`` (a fixed
    path in the source tree would overwrite the shipped model's picture with any run's)."""
    seed: int = 0
    """Seed of the samples."""


def prompt_targets(pairs: tuple[HeldoutPair, ...]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The held-out prompts' targets (one per pair) and the seen prompts' (``SEEN_PROMPTS``).

    Raises:
        ValueError: A seen prompt names a held-out pair (it would not be seen).
    """
    check_pairs(pairs)
    for targets in SEEN_PROMPTS:
        if is_heldout(targets, pairs):
            raise ValueError(f"The seen prompt {describe(targets)!r} names a held-out pair; change the pairs.")
    return [{a: va, b: vb} for a, va, b, vb in pairs], list(SEEN_PROMPTS)


def sample_model(
    model_dir: Path, prompts: list[str], cfg: EvalConfig, console: Console, device: torch.device | str = "cpu"
) -> Tensor:
    """Samples (P, n, 3, H, W) in [-1, 1] from the model folder, through the standard pipeline on ``device`` (the
    noise is drawn on the CPU, so a seed gives the same start on every device)."""
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.to(device)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(cfg.seed)
    out = []
    for i, prompt in enumerate(prompts):
        images = pipe(
            [prompt] * cfg.samples_per_prompt,
            height=size,
            width=size,
            num_inference_steps=cfg.inference_steps,
            guidance_scale=cfg.guidance_scale,
            generator=generator,
            output_type="pt",
        ).images
        out.append(images.cpu() * 2.0 - 1.0)
        console.log(f"sampled {i + 1}/{len(prompts)}: {prompt}")
    return torch.stack(out)


def save_grid(samples: Float[Tensor, "p n 3 h w"], labels: list[str], path: Path, scale: int = 2) -> None:
    """Save samples as a PNG grid, one row per prompt with its label on the left."""
    p, n, _, h, w = samples.shape
    pixels = ((samples.clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(0, 3, 1, 4, 2).reshape(p * h, n * w, 3)
    grid = Image.fromarray(pixels.numpy()).resize((n * w * scale, p * h * scale), Image.NEAREST)
    margin = 6 * max(len(label) for label in labels) + 8
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        draw.text((4, row * h * scale + h * scale // 2 - 6), label, fill="black")
    atomic_save(Path(path), canvas.save)


def judge(predicted: dict[str, Tensor], targets: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per named attribute: how many samples show it (``shown``) and how many of those the probe reads as the
    target (``correct``). The hair style is shown in every sample."""
    n = len(predicted["style"])
    counts = {}
    for key, value in targets.items():
        shown = predicted[f"visible_{key}"] if key in REGIONS else torch.ones(n, dtype=torch.bool)
        correct = (predicted[key] == TABLES[key].index(value)) & shown
        counts[key] = {"shown": int(shown.sum()), "correct": int(correct.sum()), "samples": n}
    return counts


def pool(per_prompt: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, float]]:
    """Accuracy (correct / shown) and coverage (shown / samples) per attribute over a group of prompts."""
    totals: dict[str, dict[str, int]] = {}
    for counts in per_prompt:
        for key, c in counts.items():
            for name, value in c.items():
                totals.setdefault(key, {}).setdefault(name, 0)
                totals[key][name] += value
    return {
        key: {
            "accuracy": t["correct"] / t["shown"] if t["shown"] else float("nan"),
            "coverage": t["shown"] / t["samples"],
            "prompts": sum(key in counts for counts in per_prompt),
        }
        for key, t in ((k, totals[k]) for k in PROBED if k in totals)
    }


def real_accuracy(predicted: dict[str, Tensor], attrs: dict[str, np.ndarray], shown: dict[str, np.ndarray]) -> dict:
    """Per attribute, the probe's accuracy on rendered images where the rendered labels show the region."""
    out = {}
    for key in PROBED:
        mask = shown.get(key, np.ones(len(attrs[key]), bool))
        correct = predicted[key].numpy() == attrs[key]
        out[key] = {"accuracy": float(correct[mask].mean()) if mask.any() else float("nan"), "images": int(mask.sum())}
    return out


@torch.no_grad()
def _vae_round_trip(model_dir: Path, images: Tensor, device: torch.device | str = "cpu") -> Tensor:
    vae = AutoencoderKL.from_pretrained(Path(model_dir) / "vae").eval().to(device)
    decoded = [vae.decode(vae.encode(x.to(device)).latent_dist.mean).sample.cpu() for x in images.split(128)]
    return torch.cat(decoded)


def evaluation_renders(data: HeadDatasetConfig, cfg: EvalConfig) -> HeadDatasetConfig:
    """The held-out real renders of the evaluation: ``cfg.eval_identities`` new identities (the next seed), every
    attribute combination allowed."""
    return dataclasses.replace(
        data,
        num_identities=cfg.eval_identities,
        identities_per_shard=min(cfg.eval_identities, 40),
        seed=data.seed + 1,
        exclude_heldout=False,
    )


def evaluate_builtin(
    train_cfg: TrainBuiltinConfig, cfg: EvalConfig, console: Console | None = None, sitting: Sitting | None = None
) -> dict:
    """Train the probe, score it on real renders, sample the model and score the samples.

    Args:
        train_cfg: The run whose model (``output_dir``) and renders (``work_dir``) are scored.
        cfg: How it is scored.
        console: Where progress goes.
        sitting: The deadline; when it passes while the evaluation renders are drawn, the rendered shards are kept
            and :class:`~avatarstudio_ns.builtin.sitting.SittingOver` is raised (the rest is not resumable: it
            takes minutes).

    Returns:
        The figures (also written to ``work_dir/metrics.json``).
    """
    console = console or Console()
    with torch_threads(train_cfg.threads):
        return _evaluate(train_cfg, cfg, console, sitting or Sitting())


def _evaluate(train_cfg: TrainBuiltinConfig, cfg: EvalConfig, console: Console, sitting: Sitting) -> dict:
    work = Path(train_cfg.work_dir)
    heldout, seen = prompt_targets(train_cfg.data.heldout_pairs)
    train_data = load_training_set(train_cfg, console)
    real = build_dataset(evaluation_renders(train_cfg.data, cfg), work / "data_eval", sitting=sitting)
    probe = ProbeEnsemble([train_probe(train_data, cfg.probe, seed, console) for seed in cfg.probe_seeds])
    real_images = real.images()
    shown = visible_regions(real.labels)
    metrics: dict = {"real": real_accuracy(probe.predict(real_images), real.attrs, shown)}
    device = training_device(train_cfg.device)
    reconstructed = _vae_round_trip(train_cfg.output_dir, real_images, device)
    metrics["vae_round_trip"] = real_accuracy(probe.predict(reconstructed), real.attrs, shown)

    groups = {"heldout": heldout, "seen": seen}
    prompts = [describe(t) for t in heldout + seen]
    samples = sample_model(train_cfg.output_dir, prompts, cfg, console, device)
    counts = [judge(probe.predict(images), t) for t, images in zip(heldout + seen, samples, strict=True)]
    metrics["heldout"] = pool(counts[: len(heldout)])
    metrics["seen"] = pool(counts[len(heldout) :])
    metrics["per_prompt"] = {prompt: c for prompt, c in zip(prompts, counts, strict=True)}
    metrics["settings"] = {
        "samples_per_prompt": cfg.samples_per_prompt,
        "guidance_scale": cfg.guidance_scale,
        "inference_steps": cfg.inference_steps,
        "real_images": len(real),
        "probe_seeds": list(cfg.probe_seeds),
        "probe": dataclasses.asdict(cfg.probe),
        "prompts": {name: [describe(t) for t in members] for name, members in groups.items()},
    }
    labels = [prompt.removeprefix("photo of a person with ") for prompt in prompts]
    grid_path = Path(cfg.grid_path) if cfg.grid_path is not None else work / "samples.jpg"
    save_grid(samples, labels, grid_path)
    atomic_write_text(work / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print_metrics(console, metrics)
    console.print(f"Sample grid: {grid_path}")
    return metrics


def print_metrics(console: Console, metrics: dict) -> None:
    """The probe's accuracy per attribute and image set, with the share of samples showing each region."""
    table = Table(title="Attribute probe accuracy (share of samples showing the region)")
    table.add_column("images")
    for key in PROBED:
        table.add_column(key)
    for row in ("real", "vae_round_trip"):
        table.add_row(row, *(f"{metrics[row][k]['accuracy']:.1%}" for k in PROBED))
    for row in ("heldout", "seen"):
        cells = []
        for key in PROBED:
            m = metrics[row].get(key)
            cells.append(f"{m['accuracy']:.1%} ({m['coverage']:.0%})" if m else "-")
        table.add_row(f"samples, {row} prompts", *cells)
    console.print(table)
