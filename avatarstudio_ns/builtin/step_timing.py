"""How long the built-in model's training takes here: seconds per step of each stage, measured on this machine in
a few steps, and the wall time of a whole schedule estimated from them (``avatarstudio train-builtin --estimate``).

The steps are the stages' own computations (same networks, batch sizes, losses and optimisers) on random inputs,
so the estimate follows any change of sizes or schedule; on a shared CPU it is only as steady as the load.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from avatarstudio_ns.builtin.head_images import render_shard
from avatarstudio_ns.builtin.probe import AttributeProbe, ProbeConfig
from avatarstudio_ns.builtin.small_model import build_text_encoder, build_unet, build_vae
from avatarstudio_ns.builtin.train import TrainBuiltinConfig
from avatarstudio_ns.builtin.vae_stage import fix_posterior_std
from avatarstudio_ns.threads import available_cores, torch_threads


@dataclass
class StepTimes:
    """Seconds per unit of work, measured in one process with the run's thread count."""

    render_image: float
    """Rendering one training image (its share of an identity's views)."""
    vae_crop: float
    """One VAE step on crops."""
    vae_full: float
    """One VAE step on whole images."""
    encode_image: float
    """Encoding one image to its latent."""
    unet: float
    """One UNet and text-encoder step."""
    probe: float
    """One attribute-probe step."""
    sample_step: float
    """One denoising step of one evaluation prompt (all its samples, with classifier-free guidance)."""
    load_average: tuple[float, float, float] | None
    """The machine's load average when the measurement ended."""


def _seconds_per_call(step: Callable[[], None], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up call (the least disturbed by other load)."""
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_step_times(
    cfg: TrainBuiltinConfig, probe: ProbeConfig | None = None, samples_per_prompt: int = 8, repeats: int = 2
) -> StepTimes:
    """Time a few steps of every stage of ``cfg`` (random weights and inputs).

    Args:
        cfg: The run (sizes, batch sizes, renders, threads).
        probe: The evaluation's probe settings (default: ``ProbeConfig()``).
        samples_per_prompt: Samples per evaluation prompt (one sampling step denoises them all at once).
        repeats: Timed calls per stage after a warm-up call; the fastest counts.
    """
    probe = probe or ProbeConfig()
    with torch_threads(cfg.threads):
        return _measure(cfg, probe, samples_per_prompt, repeats)


def _measure(cfg: TrainBuiltinConfig, probe_cfg: ProbeConfig, samples_per_prompt: int, repeats: int) -> StepTimes:
    side, model = cfg.model.resolution, cfg.model
    generator = torch.Generator().manual_seed(0)

    one_identity = dataclasses.replace(cfg.data, num_identities=1, identities_per_shard=1)
    t0 = time.perf_counter()
    render_shard(one_identity, 0)
    render_image = (time.perf_counter() - t0) / cfg.data.views_per_identity

    vae = build_vae(model)
    fix_posterior_std(vae)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=1e-6)

    def vae_step(crop: int) -> Callable[[], None]:
        x = torch.rand(cfg.vae.batch_size, 3, crop, crop, generator=generator) * 2 - 1

        def step() -> None:
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=generator)).sample
            loss = (recon - x).abs().mean() + (recon - x).square().mean() + 1e-3 * posterior.kl().mean() / x[0].numel()
            vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            vae_opt.step()

        return step

    vae_crop = _seconds_per_call(vae_step(min(cfg.vae.crop, side)), repeats)
    vae_full = _seconds_per_call(vae_step(side), repeats)
    batch = torch.rand(32, 3, side, side, generator=generator) * 2 - 1
    with torch.no_grad():
        encode_image = _seconds_per_call(lambda: vae.encode(batch), repeats) / batch.shape[0]

    unet = build_unet(model)
    vocab = 256
    text_encoder = build_text_encoder(model, vocab, vocab - 2, vocab - 1)
    params = [*unet.parameters(), *text_encoder.parameters()]
    unet_opt = torch.optim.AdamW(params, lr=1e-6)
    shadow = [p.detach().clone() for p in params]
    n, latent = cfg.unet.batch_size, side // model.vae_scale_factor
    z = torch.randn(n, model.latent_channels, latent, latent, generator=generator)
    tokens = torch.randint(vocab - 2, (n, model.max_length), generator=generator)
    timesteps = torch.randint(model.num_train_timesteps, (n,), generator=generator)

    def unet_step() -> None:
        embeddings = text_encoder(tokens)[0]
        loss = (unet(z, timesteps, embeddings).sample - z).square().mean()
        unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        unet_opt.step()
        with torch.no_grad():
            for s, p in zip(shadow, params, strict=True):
                s.lerp_(p, 0.005)

    unet_seconds = _seconds_per_call(unet_step, repeats)
    with torch.no_grad():
        guided = 2 * samples_per_prompt
        embeddings = text_encoder(tokens[:guided])[0]
        sample_step = _seconds_per_call(lambda: unet(z[:guided], timesteps[:guided], embeddings), repeats)

    probe = AttributeProbe(probe_cfg.width, side)
    probe_opt = torch.optim.Adam(probe.parameters(), lr=1e-6)
    images = torch.rand(probe_cfg.batch_size, 3, side, side, generator=generator) * 2 - 1
    labels = torch.randint(11, (probe_cfg.batch_size, side, side), generator=generator)

    def probe_step() -> None:
        out = probe(images)
        loss = torch.nn.functional.cross_entropy(out["labels"], labels)
        loss = loss + sum(out[key].logsumexp(-1).mean() for key in ("hair", "skin", "eyes", "lips", "brows", "style"))
        probe_opt.zero_grad(set_to_none=True)
        loss.backward()
        probe_opt.step()

    probe_seconds = _seconds_per_call(probe_step, repeats)
    return StepTimes(
        render_image=render_image,
        vae_crop=vae_crop,
        vae_full=vae_full,
        encode_image=encode_image,
        unet=unet_seconds,
        probe=probe_seconds,
        sample_step=sample_step,
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )


def estimate_minutes(
    cfg: TrainBuiltinConfig,
    times: StepTimes,
    probe_steps: int,
    eval_identities: int,
    prompts: int,
    inference_steps: int,
    cores: int | None = None,
) -> dict[str, float]:
    """Wall minutes of each stage of ``cfg`` from nothing, and their ``total``, at the measured speeds.

    Args:
        cfg: The run.
        times: Measured step times.
        probe_steps: The evaluation probes' steps, all probes together (0 when not evaluating).
        eval_identities: Identities of the evaluation renders (0 when not evaluating).
        prompts: Evaluation prompts (0 when not evaluating).
        inference_steps: Denoising steps per evaluation prompt.
        cores: Cores the render workers share (default: this machine's).
    """
    parallel = max(1, min(cfg.data.workers, cores or available_cores()))
    images = cfg.data.num_identities * cfg.data.views_per_identity
    eval_images = eval_identities * cfg.data.views_per_identity
    unet_steps = cfg.unet.steps * times.unet
    if cfg.unet.max_minutes is not None:
        unet_steps = min(unet_steps, 60.0 * cfg.unet.max_minutes)
    crop_steps = max(cfg.vae.steps - cfg.vae.full_image_steps, 0)
    seconds = {
        "renders": (images + eval_images) * times.render_image / parallel,
        "vae": crop_steps * times.vae_crop + min(cfg.vae.full_image_steps, cfg.vae.steps) * times.vae_full,
        "latents": 2 * images * times.encode_image,
        "unet": unet_steps,
        "evaluation": probe_steps * times.probe + prompts * inference_steps * times.sample_step,
    }
    minutes = {stage: s / 60.0 for stage, s in seconds.items()}
    minutes["total"] = float(np.sum(list(minutes.values())))
    return minutes
