"""The measured jobs: a recon step, a personalisation step, the guidance branches and an edit step."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from avatarstudio_ns.data.keyframes import Keyframe
from avatarstudio_ns.edit.pipeline import keyframe_losses
from avatarstudio_ns.guidance.loading import DiffusionModel
from avatarstudio_ns.guidance.personalization.finetune import PersonalizeConfig, personalize
from avatarstudio_ns.guidance.personalization.personalized_model import load_personalization
from avatarstudio_ns.guidance.vtsds import VTSDSGuidance, VTSDSGuidanceConfig
from avatarstudio_ns.scripts.bench.measure import Measurement, measure, peak_memory, synchronize, time_interleaved
from avatarstudio_ns.scripts.bench.models import build_edit_model, build_recon_model, make_batch, train_step
from avatarstudio_ns.scripts.bench.settings import EDIT_PROMPT, NUM_KEYFRAMES, SuitePlan
from avatarstudio_ns.threads import torch_threads


def bench_recon(plan: SuitePlan) -> Measurement:
    """Seconds per recon training iteration, with the CPU threads the preset trains with."""
    device = torch.device(plan.device)
    torch.manual_seed(plan.seed)
    model = build_recon_model(plan.recon_preset, device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, eps=1e-15)
    bundle, batch = make_batch(plan.recon_rays, plan.device, plan.seed)
    threads = model.config.num_cpu_threads if device.type == "cpu" else 0
    with torch_threads(threads):  # what the model's training callback sets for a CPU run
        result = measure(lambda: train_step(model, optimizer, bundle, batch), plan)
    result.extra = {"rays": plan.recon_rays, "threads": threads or torch.get_num_threads()}
    return result


def bench_keyframes(resolution: int, seed: int) -> tuple[list[Keyframe], list[torch.Tensor]]:
    """Keyframes and random images for the personalisation (their content does not change the cost)."""
    generator = torch.Generator().manual_seed(seed)
    keyframes = [Keyframe(camera_index=i, timestep_index=0, time=0.0) for i in range(NUM_KEYFRAMES)]
    images = [torch.rand(3, resolution, resolution, generator=generator) for _ in keyframes]
    return keyframes, images


def bench_personalize(plan: SuitePlan, base: DiffusionModel, folder: Path) -> Measurement:
    """Seconds per step of :func:`personalize`'s training loop, at the model's resolution.

    The steps are timed between consecutive step callbacks, so set-up (class images, encoding the keyframes)
    is not counted. The prior preservation loss is on, as in the paper (it doubles the UNet batch); three
    class images sampled with two steps suffice, since their content does not change the cost. The
    personalisation written to ``folder`` is what the guidance measures then load.
    """
    config = PersonalizeConfig(
        steps=plan.warmup + plan.steps + 1,
        batch_size=plan.personalize_batch,
        mode=plan.personalize_mode,  # type: ignore[arg-type]
        num_class_images=plan.personalize_batch,
        class_image_steps=2,
        save_every=10**9,
        progress=False,
        seed=plan.seed,
    )
    keyframes, images = bench_keyframes(base.resolution, plan.seed)
    device = torch.device(plan.device)
    stamps: list[float] = []

    def stamp(_info) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    result = Measurement(samples=[])
    with peak_memory(device, result), torch.enable_grad():
        personalize(keyframes, images, base, config, folder, callbacks=[stamp])
    # Step k's time is stamp[k] - stamp[k - 1]; the first `warmup` + 1 steps are not counted.
    result.samples = [b - a for a, b in zip(stamps[plan.warmup : -1], stamps[plan.warmup + 1 :], strict=True)]
    result.extra = {"batch": plan.personalize_batch, "mode": plan.personalize_mode, "resolution": base.resolution}
    if device.type == "cpu":
        result.memory_method += "; includes the class-image sampling before training"
    return result


def branch_config(config: VTSDSGuidanceConfig, above_k: bool, num_train_timesteps: int) -> VTSDSGuidanceConfig:
    """The guidance config with t pinned just above K, or below it (anneal off): one branch of Eq. 10."""
    k = config.k_timestep
    t = (k + num_train_timesteps) // 2 if above_k else k // 2
    fraction = t / num_train_timesteps
    return dataclasses.replace(config, t_min=fraction, t_max_start=fraction, anneal="none")


def high_fraction(guidance: VTSDSGuidance, total_steps: int, seed: int) -> float:
    """Share of a run's steps whose sampled t exceeds K, with the guidance's own annealed schedule."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.cat([guidance.sample_timesteps(1, s, total_steps, generator).cpu() for s in range(total_steps)])
    return float((t > guidance.config.k_timestep).float().mean())


def build_guidance(plan: SuitePlan, base: DiffusionModel, folder: Path) -> VTSDSGuidance:
    """VT-SDS at the paper's settings on the personalisation in ``folder``."""
    config = VTSDSGuidanceConfig(prompt=EDIT_PROMPT)  # the paper's w, v, K, t range and annealing
    return VTSDSGuidance(config, device=base.device, base=base, personalized=load_personalization(folder, base))


def guidance_variants(guidance: VTSDSGuidance) -> dict[str, VTSDSGuidance]:
    """The three guidance steps compared, on ``guidance``'s models: VT-SDS above K, VT-SDS at or below K, plain SDS."""
    n = guidance.base.num_train_timesteps
    paper = guidance.config
    configs = {
        "vtsds_above_k": branch_config(paper, True, n),
        "vtsds_below_k": branch_config(paper, False, n),
        "sds": dataclasses.replace(branch_config(paper, True, n), use_personalized=False),
    }
    return {
        name: VTSDSGuidance(config, device=guidance.base.device, base=guidance.base, personalized=guidance.personalized)
        for name, config in configs.items()
    }


def guidance_step(guidance: VTSDSGuidance, image: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One guidance step on ``image``: loss and backward to the image."""
    x = image.detach().requires_grad_(True)
    out = guidance(x, [0] * x.shape[0], step=0, total_steps=1, generator=generator)
    out["loss_vtsds"].backward()
    return out


def bench_guidance(plan: SuitePlan, variants: dict[str, VTSDSGuidance]) -> dict[str, Measurement]:
    """Each guidance of ``variants`` on the same render-sized image, timed alternately; peak memory of each."""
    device = torch.device(plan.device)
    generator = torch.Generator().manual_seed(plan.seed)
    image = torch.rand(plan.guidance_batch, 3, plan.render_resolution, plan.render_resolution, generator=generator)
    image = image.to(device)
    fns = {name: (lambda g=g: guidance_step(g, image, generator)) for name, g in variants.items()}
    times = time_interleaved(fns, plan.steps, plan.warmup, device)
    results = {}
    for name, guidance in variants.items():
        results[name] = Measurement(samples=times[name])
        with peak_memory(device, results[name]):
            out = guidance_step(guidance, image, generator)
        # Record the branch actually taken, so a wrong pinning of t cannot pass unnoticed.
        results[name].extra = {"t": out["t"].tolist(), "v": out["v"].tolist()}
    return results


def bench_edit(plan: SuitePlan, guidance: VTSDSGuidance) -> Measurement:
    """One edit step with ``guidance``: the edit pipeline's own keyframe render and losses (guidance, entropy,
    identity), backward, Adam on the edit model's trainable parameters (the appearance), as the trainer runs it."""
    device = torch.device(plan.device)
    torch.manual_seed(plan.seed)
    model = build_edit_model(plan.recon_preset, device)
    optimizer = torch.optim.Adam([p for group in model.get_param_groups().values() for p in group], lr=1e-3, eps=1e-15)
    side = plan.render_resolution
    bundle, rays = make_batch(side * side, plan.device, plan.seed)
    batch = {"keyframe_index": 0, "image_height": side, "image_width": side, "image": rays["image"]}

    timesteps: list[float] = []
    losses: set[str] = set()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, loss_dict, metrics = keyframe_losses(model, guidance, bundle, batch, step=0, total_steps=1)
        sum(loss_dict.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
        timesteps.append(float(metrics["t"]))
        losses.update(loss_dict)

    result = measure(step, plan)
    # The timesteps drawn and the losses summed, so what was timed is on record (the caller pins t above K).
    result.extra = {"render_resolution": side, "t": sorted(set(timesteps)), "losses": sorted(losses)}
    return result


def derived_figures(guidance_results: dict[str, Measurement], edit: Measurement, fraction: float) -> dict[str, float]:
    """Expected VT-SDS cost of a run, its ratio to SDS, and the same for a whole edit step.

    The edit step was timed above K; its cost outside the guidance (render, backward through the NeRF, Adam)
    is the edit step minus the above-K guidance step, and is the same for either guidance.
    """
    high = guidance_results["vtsds_above_k"].median
    low = guidance_results["vtsds_below_k"].median
    sds = guidance_results["sds"].median
    expected = fraction * high + (1.0 - fraction) * low
    rest = max(edit.median - high, 0.0)
    return {
        "vtsds_expected_s": expected,
        "vtsds_over_sds": expected / sds,
        "vtsds_above_k_over_sds": high / sds,
        "edit_step_expected_s": rest + expected,
        "edit_step_vtsds_over_sds": (rest + expected) / (rest + sds),
    }
