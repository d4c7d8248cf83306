"""Stage 2 of the built-in model: the UNet and the CLIP text encoder, trained together on cached latents.

The loss is Stable Diffusion's: predict the noise added to a latent at a uniform random timestep (or v, when the
model is configured for it), given the caption's embedding, with Min-SNR-5 weighting (Hang et al. 2023), which
converges several times faster for small budgets. A tenth of the captions are replaced by the empty prompt so that
the same network gives the unconditional prediction classifier-free guidance needs. An exponential moving average
of the weights is what gets shipped.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from jaxtyping import Float, Int, UInt8
from rich.console import Console
from torch import Tensor, nn
from transformers import CLIPTextModel, CLIPTokenizer

from avatarstudio_ns.builtin.checkpoint import copy_coarser_levels, copy_weights, load_state, save_state
from avatarstudio_ns.builtin.head_images import CaptionConfig, HeadImages, training_caption
from avatarstudio_ns.builtin.probe import visible_regions
from avatarstudio_ns.builtin.progress import StageProgress
from avatarstudio_ns.builtin.sitting import Sitting
from avatarstudio_ns.data.labels import REGIONS
from avatarstudio_ns.guidance.prediction import training_target


@dataclass
class UnetStageConfig:
    """How the UNet and the text encoder are trained."""

    steps: int = 8000
    """Optimiser steps (an upper bound when ``max_minutes`` is set). The first model stopped at 3515 of 4000 at
    8x8 latents; version 3 at 2536, its time cap on a GPU; the shipped version 4 trained 1482 more from it (on a
    CPU, the last 300 cooled down)."""
    max_minutes: float | None = None
    """Stop early after this much training time, summed over resumed runs; None trains all ``steps``. The
    number of steps actually done is logged and kept in the checkpoint."""
    batch_size: int = 128
    """Latents per step (the shipped model's; the first ones trained with 64 on a CPU)."""
    lr: float = 1e-3
    """AdamW learning rate of the UNet and the text encoder after the warm-up."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Constant after the warm-up, or "cosine": the warm-up's rate times a half cosine that runs from 1 at step 0
    to 0 at ``steps`` (from step 0, not from the warm-up's end as the VAE's schedule; a run cut short by
    ``max_minutes`` stops before it reaches 0). A rate that ends near 0 lets the weights settle instead of moving
    with each batch, which the small details (irises, lips) depend on."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    uncond_prob: float = 0.1
    """Probability of training on the empty prompt (classifier-free guidance dropout)."""
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    """Which attributes a training caption names."""
    part_weight: float = 20.0
    """Extra loss weight (>= 0) on the latent cells that hold a part the caption names by colour (the eyes, lips or
    eyebrows; ``weighted_parts``): an iris is 0.08 % of the pixels and lips 0.5 %, so an unweighted loss barely asks the
    model to bind those words to them. A cell's weight is ``1 + part_weight`` where the part shows in it; 0 weighs
    every cell alike (version 3). Needs the renders' label maps. At 20 on the eyes and lips, version 3 continued for
    2400 steps followed the lip colour in 76.6 % of held-out samples instead of 19.7 %, eye colour in 28.9 % instead
    of 9.7 % (docs/builtin_model.md); the shipped version 4 was trained on with it."""
    weighted_parts: tuple[str, ...] = ("eyes", "lips")
    """The caption nouns whose parts ``part_weight`` weighs (keys of ``PART_LABELS``); the shipped model's."""
    eye_region: Literal["iris", "eyes"] = "eyes"
    """What "eyes" weighs: the iris alone, or the whole eye (sclera, iris and pupil; ``REGIONS["eyes"]``), which
    asks the model to draw the eye's shape around the coloured iris as well (the shipped model's last runs)."""
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting: weight min(SNR, gamma) / SNR for epsilon prediction, min(SNR + 1, gamma) / (SNR + 1)
    for v prediction; 0 disables it."""
    ema_decay: float = 0.995
    """Largest EMA decay; early on the decay is (1 + step) / (10 + step), so the average warms up quickly."""
    init_from: Path | None = None
    """A model folder (the diffusers layout this command writes, same sizes and words) whose UNet and text encoder
    start the run instead of random weights, e.g. one trained elsewhere whose checkpoint did not come along. The
    optimiser, its warm-up and the moving average start afresh; ``steps`` counts this run's steps. This run's UNet
    may have cross-attention at more levels than the folder's (``--model.unet-attention``): the new attention starts
    as the identity, so training continues from what the folder's UNet does. Or it may have finer levels in front
    of the folder's (``--model.unet-channels``, for a finer latent; keep the folder's ``--model.time-embedding-dim``):
    the folder's levels start its coarser ones and the finer ones are learnt from scratch."""
    checkpoint_every: int = 100
    """Steps between checkpoints."""
    log_every: int = 25
    """Steps between log lines."""


def learning_rate(cfg: UnetStageConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based): the linear warm-up, then ``cfg.lr_schedule``."""
    rate = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
    if cfg.lr_schedule == "cosine":
        rate *= 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return rate


class _Ema:
    """Exponential moving average of a set of modules' parameters."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.shadow = {
            f"{name}.{key}": p.detach().clone() for name, m in modules.items() for key, p in m.named_parameters()
        }

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module], decay: float) -> None:
        # One fused call for all tensors: on a GPU a launch per parameter cost more than the arithmetic.
        pairs = [(self.shadow[f"{name}.{key}"], p) for name, m in modules.items() for key, p in m.named_parameters()]
        torch._foreach_lerp_([s for s, _ in pairs], [p.detach() for _, p in pairs], 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, modules: dict[str, nn.Module]) -> None:
        for name, m in modules.items():
            for key, p in m.named_parameters():
                p.copy_(self.shadow[f"{name}.{key}"])


PART_LABELS: dict[str, tuple[int, ...]] = {
    "eyes": REGIONS["iris"],
    "lips": REGIONS["lips"],
    "eyebrows": REGIONS["brows"],
}
"""Caption noun -> the label ids whose latent cells ``part_weight`` weighs (``eye_region`` may widen "eyes")."""


def part_weights(
    captions: list[str],
    labels: UInt8[Tensor, "b H W"],
    latent_size: tuple[int, int],
    part_weight: float,
    parts: tuple[str, ...] = tuple(PART_LABELS),
    eye_region: Literal["iris", "eyes"] = "iris",
) -> Float[Tensor, "b 1 h w"]:
    """Loss weight of each latent cell: ``1 + part_weight`` on cells that show a part its caption names.

    Args:
        captions: One caption per item.
        labels: Each item's semantic labels at image resolution (mirrored with its latent).
        latent_size: The latents' (h, w).
        part_weight: Extra weight of a named part's cells (>= 0).
        parts: The caption nouns weighed (keys of ``PART_LABELS``).
        eye_region: The region of ``REGIONS`` that "eyes" weighs.

    Returns:
        A weight per item and latent cell, to multiply the item's squared error with.
    """
    if part_weight < 0:
        raise ValueError(f"part_weight must be >= 0, got {part_weight}.")
    if unknown := set(parts) - PART_LABELS.keys():
        raise ValueError(f"Unknown weighted parts {sorted(unknown)}; choose from {list(PART_LABELS)}.")
    part_labels = PART_LABELS | {"eyes": REGIONS[eye_region]}
    named = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for i, caption in enumerate(captions):
        words = set(re.findall(r"[a-z]+", caption))
        for noun in parts:
            if noun in words:
                ids = part_labels[noun]
                named[i] |= torch.isin(labels[i], torch.tensor(ids, dtype=labels.dtype, device=labels.device))
    cells = F.adaptive_max_pool2d(named[:, None].float(), latent_size)
    return 1.0 + part_weight * cells


def mirrored_labels(labels: UInt8[Tensor, "N H W"], idx: Int[Tensor, " b"], flip: Int[Tensor, " b"]) -> Tensor:
    """The label maps of a batch's images, mirrored where the batch takes the mirrored latent (``flip`` 1)."""
    picked = labels[idx]
    return torch.where(flip.bool()[:, None, None], picked.flip(-1), picked)


class _Tokens:
    """Caption -> token ids, memoised (the captions are a few thousand distinct strings)."""

    def __init__(self, tokenizer: CLIPTokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, Tensor] = {}

    def __call__(self, captions: list[str]) -> Tensor:
        for text in set(captions) - self.cache.keys():
            self.cache[text] = self.tokenizer(
                text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True
            ).input_ids
            self.cache[text] = torch.tensor(self.cache[text])
        return torch.stack([self.cache[text] for text in captions])


def _snr_weight(scheduler: DDPMScheduler, timesteps: Tensor, gamma: float) -> Tensor:
    """Min-SNR weight of each item's loss in the prediction's own space.

    Measured on the clean latent, the loss of an epsilon prediction is SNR times its error and that of a v
    prediction (SNR + 1) times; Min-SNR caps that factor at ``gamma``. For v the cap applies to SNR + 1, so the
    noisiest timesteps, where the layout is decided, keep weight 1 (SNR / (SNR + 1) would give the pure-noise
    timestep of a zero-terminal-SNR schedule no weight at all).
    """
    if gamma <= 0:
        return torch.ones(timesteps.shape)
    alphabar = scheduler.alphas_cumprod[timesteps]
    snr = alphabar / (1.0 - alphabar)
    if scheduler.config.prediction_type == "v_prediction":
        snr = snr + 1.0
    return snr.clamp_max(gamma) / snr


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    scheduler: DDPMScheduler,
    latents: dict[str, Tensor],
    data: HeadImages,
    cfg: UnetStageConfig,
    work_dir: Path,
    seed: int,
    console: Console,
    sitting: Sitting | None = None,
    device: torch.device | str = "cpu",
) -> int:
    """Train ``unet`` and ``text_encoder`` in place, resuming from ``work_dir/unet.ckpt``; they end with the
    EMA weights.

    Args:
        unet: Freshly built UNet (its weights are replaced by a checkpoint's when resuming).
        text_encoder: Freshly built text encoder.
        tokenizer: The tokenizer that goes with the text encoder.
        scheduler: Training noise schedule.
        latents: ``mean``, ``std`` (2, N, C, h, w) and ``scaling_factor`` from ``encode_latents``.
        data: The images' attributes, for captions (and their label maps, which ``cfg.part_weight`` and
            ``cfg.captions.only_visible`` need: the caller checks they are there before any stage trains).
        cfg: Training settings.
        work_dir: Folder of checkpoints.
        seed: Seed of the batches, captions, noise and timesteps.
        console: Where progress goes.
        sitting: When its time is up, the stage checkpoints the step it is at and raises
            :class:`~avatarstudio_ns.builtin.sitting.SittingOver`; resuming from there gives the same weights as
            an uninterrupted run.
        device: Where the networks train. Batches, captions, noise and timesteps are drawn on the CPU, so a run
            draws the same ones on every device.

    Returns:
        Steps trained in total.
    """
    ckpt_path = Path(work_dir) / "unet.ckpt"
    if cfg.init_from is not None and not ckpt_path.exists():
        saved = Path(cfg.init_from) / "unet"
        if len(UNet2DConditionModel.load_config(saved)["block_out_channels"]) < len(unet.config.block_out_channels):
            copied = copy_coarser_levels(unet, saved, "--unet.init-from")
            console.log(f"UNet: {copied} of {len(unet.state_dict())} weights from {saved}'s levels, finer levels new")
        elif grown := copy_weights(unet, UNet2DConditionModel, saved, "--unet.init-from"):
            console.log(f"New cross-attention, starting as the identity: {', '.join(grown)}")
        copy_weights(text_encoder, CLIPTextModel, Path(cfg.init_from) / "text_encoder", "--unet.init-from")
        console.log(f"UNet and text encoder start from {cfg.init_from}")
    modules = {"unet": unet.to(device), "text_encoder": text_encoder.to(device)}
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed + 2)
    ema = _Ema(modules)
    sitting = sitting or Sitting()
    step, elapsed = 0, 0.0
    if (state := load_state(ckpt_path)) is not None:
        for name, m in modules.items():
            m.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
        ema.shadow = {key: value.to(device) for key, value in state["ema"].items()}
        generator.set_state(state["generator"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        console.log(f"Resuming the UNet at step {step} ({elapsed / 60:.1f} min trained)")

    def checkpoint() -> None:
        state = {name: m.state_dict() for name, m in modules.items()}
        state |= {"optimizer": optimizer.state_dict(), "ema": ema.shadow, "generator": generator.get_state()}
        save_state({**state, "step": step, "elapsed": elapsed}, ckpt_path)

    tokens = _Tokens(tokenizer)
    labels = torch.from_numpy(data.labels) if cfg.part_weight > 0 else None
    shown = visible_regions(data.labels) if cfg.captions.only_visible else {}
    mean, std, scale = latents["mean"], latents["std"], float(latents["scaling_factor"])
    num_t = scheduler.config.num_train_timesteps
    alphabar = scheduler.alphas_cumprod.to(device)
    unet.train()
    text_encoder.train()
    budget = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    with StageProgress(console, "unet", cfg.steps, step, cfg.log_every) as bar:
        while step < cfg.steps and (budget is None or elapsed < budget):
            if sitting.over():
                checkpoint()
                raise sitting.stop(f"UNet at step {step}/{cfg.steps}")
            t_start = time.monotonic()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            idx = torch.randint(mean.shape[1], (cfg.batch_size,), generator=generator)
            flip = (torch.rand(cfg.batch_size, generator=generator) < 0.5).long()
            noise_z = torch.randn((cfg.batch_size, *mean.shape[2:]), generator=generator)
            z0 = ((mean[flip, idx] + std[flip, idx] * noise_z) * scale).to(device)
            drop = torch.rand(cfg.batch_size, generator=generator) < cfg.uncond_prob
            captions = [
                ""
                if d
                else training_caption(
                    data.values(int(i)), generator, cfg.captions, {key: bool(v[i]) for key, v in shown.items()}
                )
                for i, d in zip(idx.tolist(), drop.tolist(), strict=True)
            ]
            timesteps = torch.randint(num_t, (cfg.batch_size,), generator=generator)
            noise = torch.randn(z0.shape, generator=generator).to(device)
            weight = _snr_weight(scheduler, timesteps, cfg.min_snr_gamma).to(device)
            timesteps = timesteps.to(device)
            noisy = scheduler.add_noise(z0, noise, timesteps)
            embeddings = text_encoder(tokens(captions).to(device))[0]
            pred = unet(noisy, timesteps, embeddings).sample
            target = training_target(z0, noise, alphabar[timesteps], scheduler.config.prediction_type)
            error = (pred - target).square()
            if cfg.part_weight > 0:
                item_labels = mirrored_labels(labels, idx, flip)
                error = error * part_weights(
                    captions, item_labels, tuple(z0.shape[-2:]), cfg.part_weight, cfg.weighted_parts, cfg.eye_region
                ).to(device)
            per_item = error.mean(dim=(1, 2, 3))
            loss = (per_item * weight).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            ema.update(modules, min(cfg.ema_decay, (1.0 + step) / (10.0 + step)))
            step += 1
            elapsed += time.monotonic() - t_start
            if step % cfg.checkpoint_every == 0:
                checkpoint()
            bar.update(step, loss=per_item.mean().item())
    checkpoint()
    ema.copy_to(modules)
    unet.eval()
    text_encoder.eval()
    console.log(f"UNet trained for {step} steps ({elapsed / 60:.1f} min)")
    return step
