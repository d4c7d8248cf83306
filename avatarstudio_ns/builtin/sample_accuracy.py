"""Does the built-in model follow its captions? Sample it and let the attribute probe judge the samples.

Reference figures come first: the probe's accuracy on new exact renders, and on the same renders after a
VAE round trip (the best a sample decoded by this VAE could score). Then the model is sampled through the
standard ``StableDiffusionPipeline`` with prompts naming (hair colour, skin tone) pairs that were never
rendered for training, plus a few seen prompts such as the demo's "photo of a person with blue hair".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table
from torch import Tensor

from avatarstudio_ns.builtin.head_images import TABLES, build_dataset
from avatarstudio_ns.builtin.probe import AttributeProbe, ProbeConfig, accuracy, train_probe
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, load_training_set
from avatarstudio_ns.threads import torch_threads

SEEN_PROMPTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("photo of a person with blue hair", {"hair": "blue"}),
    ("photo of a person with brown hair and light skin", {"hair": "brown", "skin": "light"}),
    ("photo of a person with blonde hair and dark skin", {"hair": "blonde", "skin": "dark"}),
    ("photo of a person with black hair, pale skin and blue eyes", {"hair": "black", "skin": "pale", "eyes": "blue"}),
)
"""Prompts of attribute combinations present in the training set, with what the probe should read."""


@dataclass
class EvalConfig:
    """How the trained model is scored."""

    eval_identities: int = 96
    """Identities of the held-out real renders (new seed, every attribute combination allowed)."""
    samples_per_prompt: int = 8
    """Samples per prompt."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale."""
    inference_steps: int = 50
    """DDIM steps per sample."""
    front_azimuth_deg: float = 60.0
    """Eye colour is scored on real renders only from cameras within this azimuth of the face."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """The probe's training."""
    grid_path: Path = Path("docs/images/builtin_samples.png")
    """Where the sample grid is saved."""
    seed: int = 0
    """Seed of the probe and the samples."""


def heldout_prompts(pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, dict[str, str]]]:
    """One prompt per held-out (hair colour, skin tone) pair."""
    return [(f"photo of a person with {h} hair and {s} skin", {"hair": h, "skin": s}) for h, s in pairs]


def sample_model(model_dir: Path, prompts: list[str], cfg: EvalConfig, console: Console) -> Tensor:
    """Samples (P, n, 3, H, W) in [-1, 1] from the model folder, through the standard pipeline."""
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
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
        out.append(images * 2.0 - 1.0)
        console.log(f"sampled {i + 1}/{len(prompts)}: {prompt}")
    return torch.stack(out)


def save_grid(samples: Tensor, labels: list[str], path: Path, scale: int = 2) -> None:
    """Save samples (P, n, 3, H, W) as a PNG grid, one row per prompt with its label on the left."""
    p, n, _, h, w = samples.shape
    pixels = ((samples.clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(0, 3, 1, 4, 2).reshape(p * h, n * w, 3)
    grid = Image.fromarray(pixels.numpy()).resize((n * w * scale, p * h * scale), Image.NEAREST)
    margin = 190
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        draw.text((4, row * h * scale + h * scale // 2 - 6), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _target_indices(targets: dict[str, str], n: int) -> dict[str, np.ndarray]:
    return {key: np.full(n, TABLES[key].index(name)) for key, name in targets.items()}


@torch.no_grad()
def _vae_round_trip(model_dir: Path, images: Tensor) -> Tensor:
    vae = AutoencoderKL.from_pretrained(Path(model_dir) / "vae").eval()
    return torch.cat([vae.decode(vae.encode(x).latent_dist.mean).sample for x in images.split(128)])


def evaluate_builtin(train_cfg: TrainBuiltinConfig, cfg: EvalConfig, console: Console | None = None) -> dict:
    """Train the probe, score it on real renders, sample the model and score the samples.

    Returns:
        The figures (also written to ``work_dir/metrics.json``).
    """
    console = console or Console()
    with torch_threads(train_cfg.threads):
        return _evaluate(train_cfg, cfg, console)


def _evaluate(train_cfg: TrainBuiltinConfig, cfg: EvalConfig, console: Console) -> dict:
    work = Path(train_cfg.work_dir)
    train_data = load_training_set(train_cfg, console)
    eval_data_cfg = dataclasses.replace(
        train_cfg.data,
        num_identities=cfg.eval_identities,
        identities_per_shard=min(cfg.eval_identities, 48),
        seed=train_cfg.data.seed + 1,
        exclude_heldout=False,
    )
    real = build_dataset(eval_data_cfg, work / "data_eval")
    probe: AttributeProbe = train_probe(train_data, cfg.probe, cfg.seed, console)
    real_images = real.images()
    metrics: dict = {"real": accuracy(probe.predict(real_images), real.attrs)}
    front = np.abs(real.azimuth) < cfg.front_azimuth_deg
    predicted = probe.predict(real_images[torch.from_numpy(front)])
    metrics["real"]["eyes_front"] = accuracy(predicted, {"eyes": real.attrs["eyes"][front]})["eyes"]
    metrics["vae_round_trip"] = accuracy(probe.predict(_vae_round_trip(train_cfg.output_dir, real_images)), real.attrs)

    heldout = heldout_prompts(train_cfg.data.heldout_pairs)
    prompts = heldout + list(SEEN_PROMPTS)
    samples = sample_model(train_cfg.output_dir, [p for p, _ in prompts], cfg, console)
    n = cfg.samples_per_prompt
    per_prompt = {}
    for (prompt, targets), images in zip(prompts, samples, strict=True):
        per_prompt[prompt] = accuracy(probe.predict(images), _target_indices(targets, n))
    for group, members in (("heldout_pairs", heldout), ("seen_prompts", list(SEEN_PROMPTS))):
        keys = sorted({k for _, t in members for k in t})
        metrics[group] = {key: float(np.mean([per_prompt[p][key] for p, t in members if key in t])) for key in keys}
    metrics["per_prompt"] = per_prompt
    metrics["settings"] = {
        "samples_per_prompt": n,
        "guidance_scale": cfg.guidance_scale,
        "inference_steps": cfg.inference_steps,
        "real_images": len(real),
    }
    labels = [prompt.removeprefix("photo of a person with ") for prompt, _ in prompts]
    save_grid(samples, labels, Path(cfg.grid_path))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _print(console, metrics, cfg)
    return metrics


def _print(console: Console, metrics: dict, cfg: EvalConfig) -> None:
    table = Table(title="Attribute probe accuracy")
    table.add_column("images")
    for key in ("hair", "skin", "eyes"):
        table.add_column(key)
    for row in ("real", "vae_round_trip", "heldout_pairs", "seen_prompts"):
        table.add_row(row, *(f"{metrics[row][k]:.1%}" if k in metrics[row] else "-" for k in ("hair", "skin", "eyes")))
    console.print(table)
    console.print(f"Eye colour on front views of real renders: {metrics['real']['eyes_front']:.1%}")
    console.print(f"Sample grid: {cfg.grid_path}")
