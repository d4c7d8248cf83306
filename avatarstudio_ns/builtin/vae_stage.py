"""Stage 1 of the built-in model: the KL autoencoder, then the latents of the whole training set.

The autoencoder is trained on pixel reconstruction (L1 + L2) with a small KL term, as Stable Diffusion's is
minus the perceptual and adversarial losses (fine detail matters little here; colours must be exact). Most
steps see random crops, which costs a quarter of a full image for a convolutional network; the last steps
see whole images so the mid-block attention learns the full latent grid.

The posterior's standard deviation is fixed small instead of learned (see ``fix_posterior_std``). With a
learned one, initialised at 1, the decoder sees latents drowned in noise until the encoder has shrunk it:
a first run of 600 steps ended with every head decoded as a grey-brown blob, hair colour lost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import FrozenDict
from jaxtyping import Float
from rich.console import Console
from torch import Tensor

from avatarstudio_ns.atomic import atomic_write_folder
from avatarstudio_ns.builtin.checkpoint import copy_weights, load_state, save_state
from avatarstudio_ns.builtin.progress import StageProgress
from avatarstudio_ns.builtin.sitting import Sitting
from avatarstudio_ns.builtin.small_model import SmallModelConfig, build_vae
from avatarstudio_ns.builtin.vae_init import colour_preserving_init


@dataclass
class VaeStageConfig:
    """How the autoencoder is trained."""

    steps: int = 6500
    """Optimiser steps (600 left hue and skin tone half lost in a round trip; the shipped model's VAE trained
    6500; see docs/builtin_model.md)."""
    full_image_steps: int = 500
    """The last steps, which see whole images instead of crops."""
    crop: int = 32
    """Side of the random crops of the earlier steps, pixels (a multiple of the latent downsampling)."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 3e-4
    """AdamW learning rate (after a short linear warm-up, then cosine decay to a tenth); small enough not to
    undo the colour-preserving initialisation early on."""
    kl_weight: float = 1e-3
    """Weight of the KL divergence per image pixel; keeps the latents smooth enough to diffuse."""
    region_balance: float = 0.75
    """Exponent p of each region's reconstruction weight, frequency^-p over the training labels (mean 1 per pixel,
    at most ``max_region_weight``); 0 weighs every pixel alike, as the first two models did. Irises are 0.08 % of
    the pixels: unweighted, the first 16x16 VAE decoded them with 4x skin's error and lost eye colour in 3 of 4
    round trips (docs/builtin_model.md, "Version 2"); 0.5 kept it in half, 0.75 (the shipped model) with eight
    latent channels in 73 %."""
    max_region_weight: float = 50.0
    """Largest region weight."""
    init_from: Path | None = None
    """A model folder (the diffusers layout this command writes) whose autoencoder starts the run instead of the
    colour-preserving initialisation; with ``steps`` 0 it is used as it is."""
    train_encoder: bool = True
    """False trains the decoder only and keeps ``init_from``'s encoder as it is, so the latents (and any UNet trained
    on them, ``--unet.init-from`` the same folder) stay valid: a way to sharpen what the decoder paints of small
    parts (the shipped autoencoder's round trip keeps the probe's eye colour in 73 % of renders, against 87.5 % on
    the renders themselves) without training the UNet again. Needs ``init_from``."""
    checkpoint_every: int = 100
    """Steps between checkpoints."""
    log_every: int = 50
    """Steps between log lines."""


def fix_posterior_std(vae: AutoencoderKL, log_var: float = -10.0) -> None:
    """Make the encoder's log-variance a constant and keep it out of training.

    The log-variance half of ``quant_conv`` gets zero weights and bias ``log_var`` (std e^-5, tiny against
    latents of unit scale), and its gradient is masked, so the autoencoder is in effect deterministic, like
    Stable Diffusion's whose posterior std is negligible too. The KL term then only pulls the means toward
    zero, keeping the latents bounded.
    """
    conv = vae.quant_conv
    c = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[c:] = 0.0
        conv.bias[c:] = log_var

    def without_log_variance(grad: Tensor) -> Tensor:
        # Zeroed on the gradient's own device: a mask kept on the CPU cost a host-to-GPU copy every step.
        grad = grad.clone()
        grad[c:] = 0.0
        return grad

    conv.weight.register_hook(without_log_variance)
    conv.bias.register_hook(without_log_variance)


def _lr_factor(step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


def region_weights(labels: Tensor, cfg: VaeStageConfig) -> Float[Tensor, " classes"]:
    """Reconstruction weight of each label id: frequency^-``region_balance``, mean 1 over the pixels of ``labels``,
    at most ``max_region_weight`` (a label that never occurs gets the largest)."""
    counts = torch.bincount(labels.flatten().long(), minlength=int(labels.max()) + 1).double()
    weights = (counts / counts.sum()).clamp_min(1e-12) ** -cfg.region_balance
    weights = weights / (weights * counts).sum() * counts.sum()
    return weights.clamp(max=cfg.max_region_weight).float()


def _batch(
    images: Tensor, labels: Tensor | None, step: int, cfg: VaeStageConfig, scale: int, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """Random images (and their label maps), flipped half the time, cropped on the latent grid for all but the last
    steps."""
    idx = torch.randint(images.shape[0], (cfg.batch_size,), generator=generator)
    x = images[idx]
    lab = labels[idx] if labels is not None else None
    flip = torch.rand(cfg.batch_size, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    lab = torch.where(flip[:, None, None], lab.flip(-1), lab) if lab is not None else None
    if step < cfg.steps - cfg.full_image_steps and cfg.crop < x.shape[-1]:
        cells = (x.shape[-1] - cfg.crop) // scale + 1
        oy, ox = (int(v) * scale for v in torch.randint(cells, (2,), generator=generator))
        x = x[..., oy : oy + cfg.crop, ox : ox + cfg.crop]
        lab = lab[..., oy : oy + cfg.crop, ox : ox + cfg.crop] if lab is not None else None
    return x, lab


def train_vae(
    images: Tensor,
    model_cfg: SmallModelConfig,
    cfg: VaeStageConfig,
    work_dir: Path,
    seed: int,
    console: Console,
    sitting: Sitting | None = None,
    labels: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> AutoencoderKL:
    """Train the autoencoder, resuming from ``work_dir/vae.ckpt``; the result is saved to ``work_dir/vae``.

    Args:
        images: Training images (N, 3, H, W) in [-1, 1].
        model_cfg: Sizes (the architecture comes from ``build_vae``).
        cfg: Training settings.
        work_dir: Folder of checkpoints and stage outputs.
        seed: Seed of initial weights and batches.
        console: Where progress goes.
        sitting: When its time is up, the stage checkpoints the step it is at and raises
            :class:`~avatarstudio_ns.builtin.sitting.SittingOver`; resuming from there gives the same weights as
            an uninterrupted run.
        labels: Label ids (N, H, W) of the images' pixels, for the per-region loss weights
            (``cfg.region_balance``); None weighs every pixel alike.
        device: Where the autoencoder trains. Batches and noise are drawn on the CPU, so a run draws the same ones
            on every device.

    Returns:
        The trained autoencoder in eval mode, on ``device``.
    """
    final = Path(work_dir) / "vae"
    if (final / "config.json").exists():
        console.log(f"VAE already trained: {final}")
        vae = AutoencoderKL.from_pretrained(final).eval()
        # from_pretrained records the folder it read in the config, which the exported model then carried: a resumed
        # training wrote another vae/config.json than an uninterrupted one, with a path of this machine in it.
        vae._internal_dict = FrozenDict({k: v for k, v in vae.config.items() if k != "_name_or_path"})
        return vae.to(device)
    if not cfg.train_encoder and cfg.init_from is None:
        raise ValueError("--vae.no-train-encoder keeps a trained encoder: give it with --vae.init-from FOLDER.")
    torch.manual_seed(seed)
    vae = build_vae(model_cfg)
    fix_posterior_std(vae)
    if cfg.init_from is not None:
        copy_weights(vae, AutoencoderKL, Path(cfg.init_from) / "vae", "--vae.init-from")
        console.log(f"VAE starts from {cfg.init_from}")
    else:
        sample = torch.randint(images.shape[0], (64,), generator=torch.Generator().manual_seed(seed))
        colour_preserving_init(vae, images[sample])
    vae.to(device)
    encoder = (vae.encoder, vae.quant_conv)
    if not cfg.train_encoder:
        for part in encoder:
            part.requires_grad_(False)
    trained = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed + 1)
    ckpt_path = Path(work_dir) / "vae.ckpt"
    sitting = sitting or Sitting()
    step = 0
    if (state := load_state(ckpt_path)) is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step = int(state["step"])
        console.log(f"Resuming the VAE at step {step}")

    def checkpoint() -> None:
        state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict()}
        save_state({**state, "generator": generator.get_state(), "step": step}, ckpt_path)

    balanced = labels is not None and cfg.region_balance > 0
    weights = region_weights(labels, cfg).to(device) if balanced else None
    vae.train()
    if not cfg.train_encoder:
        for part in encoder:
            part.eval()
    t0 = time.monotonic()
    with StageProgress(console, "vae", cfg.steps, step, cfg.log_every) as bar:
        while step < cfg.steps:
            if sitting.over():
                checkpoint()
                raise sitting.stop(f"VAE at step {step}/{cfg.steps}")
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * _lr_factor(step, cfg.steps)
            x, lab = _batch(images, labels if balanced else None, step, cfg, model_cfg.vae_scale_factor, generator)
            x, lab = x.to(device), lab.to(device) if lab is not None else None
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=generator)).sample
            error = (recon - x).abs()
            l1 = error.mean()
            kl = posterior.kl().mean() / x[0].numel()
            if weights is None:
                loss = l1 + error.square().mean() + cfg.kl_weight * kl
            else:
                loss = (weights[lab.long()][:, None] * (error + error.square())).mean() + cfg.kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            step += 1
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoint()
            bar.update(step, l1=l1.item(), kl=kl.item())
    vae.eval()
    atomic_write_folder(final, lambda tmp: vae.save_pretrained(tmp, safe_serialization=True))
    console.log(f"VAE trained in {(time.monotonic() - t0) / 60:.1f} min this run")
    return vae


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, images: Tensor, work_dir: Path, console: Console, batch_size: int = 128
) -> dict[str, Tensor]:
    """Posterior mean and std of every training image and of its mirror image, and the latent scaling factor.

    The UNet stage samples latents from these instead of running the encoder every step. The scaling factor
    makes the sampled latents unit-variance, as Stable Diffusion's 0.18215 does for its VAE.

    Returns:
        ``mean`` and ``std`` of shape (2, N, C, h, w) (index 0: as rendered, 1: mirrored) and ``scaling_factor``.
    """
    path = Path(work_dir) / "latents.pt"
    if (state := load_state(path)) is not None:
        return state
    means, stds = [], []
    with StageProgress(console, "encode", 2 * images.shape[0], 0, 0) as bar:
        for flip in (False, True):
            m_list, s_list = [], []
            for start in range(0, images.shape[0], batch_size):
                x = images[start : start + batch_size].to(vae.device)
                posterior = vae.encode(x.flip(-1) if flip else x).latent_dist
                m_list.append(posterior.mean.cpu())
                s_list.append(posterior.std.cpu())
                bar.update(flip * images.shape[0] + start + x.shape[0])
            means.append(torch.cat(m_list))
            stds.append(torch.cat(s_list))
    mean, std = torch.stack(means), torch.stack(stds)
    generator = torch.Generator().manual_seed(0)
    sampled = mean + std * torch.randn(mean.shape, generator=generator)
    state = {"mean": mean, "std": std, "scaling_factor": float(1.0 / sampled.std())}
    save_state(state, path)
    return state
