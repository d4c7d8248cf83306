"""Cost of the three training stages and of VT-SDS against plain SDS (``avatarstudio bench``).

Measured per device (a *suite*):

- seconds per iteration of recon training (forward + losses + backward + Adam on a synthetic ray batch, the
  pieces of ``benchmarks/bench_recon.py``), of the personalisation (steps of :func:`personalize`'s own loop,
  timed through its callbacks), and of one edit step (render a keyframe-sized ray batch, VT-SDS loss, opacity
  entropy, backward, Adam on the appearance);
- the guidance step (VAE encode + UNet passes + backward to the image) of VT-SDS above K, below K, and of plain
  SDS on the same image; the expected VT-SDS cost of a whole edit run weights the two branches by how often
  the guidance's own timestep schedule (t_max annealing) samples t > K;
- the peak memory of each stage.

Warm-up iterations are run first and not timed; the median of the timed ones is reported (the minimum too:
on a shared machine it is the figure least disturbed by other processes).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.keyframes import Keyframe
from avatarstudio_ns.guidance.loading import BUILTIN, DiffusionModel, builtin_model_dir, load_diffusion
from avatarstudio_ns.guidance.small_model import SmallModelConfig
from avatarstudio_ns.recon.timing import make_batch, train_step
from avatarstudio_ns.threads import torch_threads

SD15_RANDOM = "sd15-random"
"""Model name: Stable Diffusion 1.5's shapes with random weights, built in memory (no download)."""
ACCEPTANCE_RATIO = 1.3
"""Target of the issue: an edit run's VT-SDS guidance costs at most this many times plain SDS."""
EDIT_PROMPT = "photo of a person with blue hair"
"""Edit prompt of the guidance (its content does not change the cost)."""
NUM_KEYFRAMES = 6
"""Keyframes the personalisation trains on (more only lengthens its set-up, not a step)."""


@dataclass
class SuitePlan:
    """Resolved settings of one device's measurements."""

    device: str
    """Torch device: cpu or cuda."""
    model: str
    """Diffusion model: builtin, a diffusers folder, sd15-random, or small (written with the given sizes)."""
    small_model: SmallModelConfig | None = None
    """Sizes of the small model written when ``model`` is ``small``."""
    model_note: str = ""
    """Why this model was chosen (e.g. the built-in model is absent)."""
    dtype: str = "fp32"
    """Compute dtype of the diffusion model: fp32 or fp16."""
    recon_preset: str = "cpu"
    """Recon model sizes: cpu (avatarstudio-recon-cpu) or gpu (avatarstudio-recon)."""
    recon_rays: int = 1024
    """Rays per recon training iteration."""
    render_resolution: int = 64
    """Side in pixels of the keyframe render of an edit step."""
    guidance_batch: int = 1
    """Images per VT-SDS step (the paper: 1)."""
    personalize_batch: int = 3
    """Keyframes per personalisation step (the paper: 3)."""
    personalize_mode: str = "lora"
    """Personalisation mode: lora or full (the paper)."""
    steps: int = 5
    """Timed iterations of each measure."""
    warmup: int = 2
    """Untimed iterations first."""
    schedule_steps: int = 10000
    """Length of the edit run whose timestep schedule weights the VT-SDS branches (the paper: 10 000)."""
    seed: int = 0
    """Seed of rays, images, models and timesteps."""


@dataclass
class Measurement:
    """Timings and peak memory of one measure."""

    samples: list[float]
    """Seconds of each timed iteration."""
    peak_mib: float = 0.0
    """Peak memory during the measure (MiB): process RSS on the CPU, allocated tensors on CUDA."""
    delta_mib: float = 0.0
    """Peak memory above the level at the measure's start (MiB)."""
    memory_method: str = ""
    """How the peak was taken."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (e.g. the branch a guidance step took)."""

    @property
    def median(self) -> float:
        """Median seconds per iteration."""
        return statistics.median(self.samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the median and minimum."""
        out = {"median_s": self.median, "min_s": min(self.samples), **dataclasses.asdict(self)}
        return out


# ---------------------------------------------------------------------------------------------------------
# Timing and memory


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], Any]], steps: int, warmup: int, device: torch.device):
    """Seconds per call of each function, the functions alternating so outside load hits all of them alike.

    Returns:
        Name -> list of ``steps`` timings, after ``warmup`` untimed rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def _vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _RSSSampler:
    """Samples the process RSS from a thread (the fallback where the kernel's peak mark cannot be reset)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> _RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@contextmanager
def peak_memory(device: torch.device, into: Measurement) -> Iterator[None]:
    """Record the peak memory of the enclosed code into ``into``.

    On CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's reserve). On the
    CPU, torch's allocations bypass Python's allocator, so tracemalloc misses them, and ``ru_maxrss`` is a
    lifetime peak that earlier stages would mask: the kernel's peak-RSS mark (VmHWM) is reset through
    ``/proc/self/clear_refs`` and read back afterwards; elsewhere RSS is sampled every 2 ms with psutil.
    """
    mib = 1024.0 * 1024.0
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        into.memory_method = "torch.cuda.max_memory_allocated"
    elif sys.platform.startswith("linux") and _reset_hwm():
        start = _vm_rss_kib() * 1024
        yield
        peak = _vm_hwm_kib() * 1024
        into.memory_method = "process peak RSS (VmHWM, reset via /proc/self/clear_refs)"
    else:
        with _RSSSampler() as sampler:
            start = sampler.peak
            yield
        peak = sampler.peak
        into.memory_method = "process RSS sampled every 2 ms (psutil)"
    into.peak_mib = peak / mib
    into.delta_mib = max(0.0, (peak - start) / mib)


def measure(fn: Callable[[], Any], plan: SuitePlan) -> Measurement:
    """Time ``fn`` (warm-up excluded) and take its peak memory over the timed iterations."""
    device = torch.device(plan.device)
    for _ in range(plan.warmup):
        fn()
    result = Measurement(samples=[])
    with peak_memory(device, result):
        result.samples = time_interleaved({"fn": fn}, plan.steps, 0, device)["fn"]
    return result


# ---------------------------------------------------------------------------------------------------------
# Models


def sd15_sizes() -> SmallModelConfig:
    """Stable Diffusion 1.5's shapes: UNet (320, 640, 1280, 1280) x 2 layers, 8 heads, 768-d cross-attention;
    VAE (128, 256, 512, 512) x 2; a 12-layer 768-d CLIP text transformer; 512 px images, 64 px latents.

    Only the tokenizer's vocabulary is smaller than CLIP's (an embedding lookup: no compute difference).
    """
    return SmallModelConfig(
        resolution=512,
        vae_channels=(128, 256, 512, 512),
        vae_layers_per_block=2,
        unet_channels=(320, 640, 1280, 1280),
        unet_layers_per_block=2,
        attention_head_dim=8,
        norm_num_groups=32,
        text_hidden_size=768,
        text_layers=12,
        text_heads=12,
    )


def random_diffusion_model(cfg: SmallModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A randomly initialised model of the given sizes, built in memory on ``device``.

    Writing Stable Diffusion 1.5's 4 GB of random weights to disk only to read them back would dominate the
    benchmark's set-up; only the tokenizer goes through a temporary folder.
    """
    from transformers import CLIPTokenizer

    from avatarstudio_ns.guidance.char_tokenizer import BOS_TOKEN, EOS_TOKEN, build_vocab, write_tokenizer
    from avatarstudio_ns.guidance.small_model import build_scheduler, build_text_encoder, build_unet, build_vae

    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = write_tokenizer(Path(tmp) / "tokenizer", cfg.words, cfg.max_length)
        tokenizer = CLIPTokenizer.from_pretrained(Path(tmp) / "tokenizer")
    vocab, _ = build_vocab(cfg.words)
    with torch.random.fork_rng(devices=[]), torch.device(device):  # initialise on the device: much faster on CUDA
        torch.manual_seed(seed)
        modules = {
            "unet": build_unet(cfg),
            "vae": build_vae(cfg),
            "text_encoder": build_text_encoder(cfg, vocab_size, vocab[BOS_TOKEN], vocab[EOS_TOKEN]),
        }
    for module in modules.values():
        module.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return DiffusionModel(
        **modules,
        tokenizer=tokenizer,
        scheduler=build_scheduler(cfg),
        prediction_type=cfg.prediction_type,
        source=f"random weights, {cfg.resolution} px",
        device=device,
        dtype=dtype,
    )


def load_bench_model(plan: SuitePlan, workdir: Path) -> DiffusionModel:
    """The plan's diffusion model: the built-in one, a folder, SD 1.5 shapes, or a freshly written small one."""
    device = torch.device(plan.device)
    if plan.model == SD15_RANDOM:
        dtype = torch.float16 if plan.dtype == "fp16" else torch.float32
        return random_diffusion_model(sd15_sizes(), device, dtype, plan.seed)
    if plan.model == "small":
        from avatarstudio_ns.guidance.small_model import write_small_model

        folder = write_small_model(workdir / "small_model", plan.small_model, seed=plan.seed)
        return load_diffusion(str(folder), device, dtype=plan.dtype)
    return load_diffusion(plan.model, device, dtype=plan.dtype)


def recon_spec(preset: str):
    """The method specification of a recon preset (cpu or gpu)."""
    from method_configs.recon import avatarstudio_recon, avatarstudio_recon_cpu

    return avatarstudio_recon_cpu if preset == "cpu" else avatarstudio_recon


def preset_rays(preset: str) -> int:
    """Rays per training batch of a recon preset."""
    return recon_spec(preset).config.pipeline.datamanager.train_num_rays_per_batch


def build_recon_model(preset: str, device: torch.device, edit: bool = False):
    """The recon model of a preset (or the edit model with the same sizes) in a [-1, 1]^3 box."""
    from nerfstudio.data.scene_box import SceneBox

    from avatarstudio_ns.edit.model import AvatarEditModelConfig

    cfg = recon_spec(preset).config.pipeline.model
    if edit:
        names = [f.name for f in dataclasses.fields(cfg) if f.init and f.name != "_target"]
        cfg = AvatarEditModelConfig(**{name: getattr(cfg, name) for name in names})
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = cfg.setup(scene_box=scene_box, num_train_data=64, metadata={"num_timesteps": 30})
    return model.to(device).train()


# ---------------------------------------------------------------------------------------------------------
# The measures


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
    from avatarstudio_ns.guidance.personalize import PersonalizeConfig, personalize

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


def branch_config(config, above_k: bool, num_train_timesteps: int):
    """The guidance config with t pinned just above K, or below it (anneal off): one branch of Eq. 10."""
    k = config.k_timestep
    t = (k + num_train_timesteps) // 2 if above_k else k // 2
    fraction = t / num_train_timesteps
    return dataclasses.replace(config, t_min=fraction, t_max_start=fraction, anneal="none")


def high_fraction(guidance, total_steps: int, seed: int) -> float:
    """Share of a run's steps whose sampled t exceeds K, with the guidance's own annealed schedule."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.cat([guidance.sample_timesteps(1, s, total_steps, generator).cpu() for s in range(total_steps)])
    return float((t > guidance.config.k_timestep).float().mean())


def build_guidance(plan: SuitePlan, base: DiffusionModel, folder: Path):
    """VT-SDS at the paper's settings on the personalisation in ``folder``."""
    from avatarstudio_ns.guidance.personalized import load_personalization
    from avatarstudio_ns.guidance.vtsds import VTSDSGuidance, VTSDSGuidanceConfig

    config = VTSDSGuidanceConfig(prompt=EDIT_PROMPT)  # the paper's w, v, K, t range and annealing
    return VTSDSGuidance(config, device=base.device, base=base, personalized=load_personalization(folder, base))


def guidance_variants(guidance) -> dict[str, Any]:
    """Configs of the three guidance steps compared: VT-SDS above K, VT-SDS at or below K, plain SDS."""
    n = guidance.base.num_train_timesteps
    paper = guidance.config
    return {
        "vtsds_above_k": branch_config(paper, True, n),
        "vtsds_below_k": branch_config(paper, False, n),
        "sds": dataclasses.replace(branch_config(paper, True, n), use_personalized=False),
    }


def guidance_step(guidance, config, image: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One guidance step on ``image`` under ``config``: loss and backward to the image."""
    guidance.config = config
    x = image.detach().requires_grad_(True)
    out = guidance(x, [0] * x.shape[0], step=0, total_steps=1, generator=generator)
    out["loss_vtsds"].backward()
    return out


def bench_guidance(plan: SuitePlan, guidance) -> dict[str, Measurement]:
    """VT-SDS per branch and plain SDS on the same render-sized image, timed alternately; peak memory of each."""
    device = torch.device(plan.device)
    paper = guidance.config
    generator = torch.Generator().manual_seed(plan.seed)
    image = torch.rand(plan.guidance_batch, 3, plan.render_resolution, plan.render_resolution, generator=generator)
    image = image.to(device)
    variants = guidance_variants(guidance)
    fns = {name: (lambda c=c: guidance_step(guidance, c, image, generator)) for name, c in variants.items()}
    times = time_interleaved(fns, plan.steps, plan.warmup, device)
    results = {}
    for name, config in variants.items():
        results[name] = Measurement(samples=times[name])
        with peak_memory(device, results[name]):
            out = guidance_step(guidance, config, image, generator)
        # Record the branch actually taken, so a wrong pinning of t cannot pass unnoticed.
        results[name].extra = {"t": out["t"].tolist(), "v": out["v"].tolist()}
    guidance.config = paper
    return results


def bench_edit(plan: SuitePlan, guidance) -> Measurement:
    """One edit step: render a keyframe-sized ray batch, VT-SDS (above K, the costlier branch) + entropy, backward,
    Adam on the appearance network only (what ``AvatarEditPipeline`` and the trainer do per step)."""
    device = torch.device(plan.device)
    torch.manual_seed(plan.seed)
    model = build_recon_model(plan.recon_preset, device, edit=True)
    optimizer = torch.optim.Adam([p for group in model.get_param_groups().values() for p in group], lr=1e-3, eps=1e-15)
    side = plan.render_resolution
    bundle, _ = make_batch(side * side, plan.device, plan.seed)
    generator = torch.Generator().manual_seed(plan.seed)
    guidance.config = guidance_variants(guidance)["vtsds_above_k"]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = model.get_outputs(bundle)
        image = outputs["rgb"].reshape(side, side, 3).permute(2, 0, 1)[None]
        loss = guidance(image, [0], step=0, total_steps=1, generator=generator)["loss_vtsds"]
        loss = loss + sum(model.get_loss_dict(outputs, {}).values())
        loss.backward()
        optimizer.step()

    result = measure(step, plan)
    result.extra = {"render_resolution": side, "branch": "t > K"}
    return result


# ---------------------------------------------------------------------------------------------------------
# Suites and the report


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


def run_suite(plan: SuitePlan) -> dict[str, Any]:
    """All measures of one device; returns the suite's JSON section."""
    if plan.device == "cuda":
        torch.cuda.empty_cache()
    measures: dict[str, Measurement] = {"recon_step": bench_recon(plan)}
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="avatarstudio-bench-") as tmp:
        base = load_bench_model(plan, Path(tmp))
        measures["personalize_step"] = bench_personalize(plan, base, Path(tmp) / "personalization")
        guidance = build_guidance(plan, base, Path(tmp) / "personalization")
        guidance_results = bench_guidance(plan, guidance)
        measures.update(guidance_results)
        fraction = high_fraction(guidance, plan.schedule_steps, plan.seed)
        measures["edit_step"] = bench_edit(plan, guidance)
        model_info = {"name": plan.model, "source": base.source, "resolution": base.resolution, "note": plan.model_note}
        model_info["unet_parameters"] = sum(p.numel() for p in base.unet.parameters())
    figures = {f"{name}_s": m.median for name, m in measures.items()}
    figures.update({f"{name}_peak_mib": m.peak_mib for name, m in measures.items()})
    figures.update(derived_figures(guidance_results, measures["edit_step"], fraction))
    return {
        "device": plan.device,
        "device_name": torch.cuda.get_device_name() if plan.device == "cuda" else platform.processor() or "cpu",
        "model": model_info,
        "settings": dataclasses.asdict(plan),
        "high_fraction": fraction,
        "figures": figures,
        "measures": {name: m.to_dict() for name, m in measures.items()},
        "acceptance": {"target": ACCEPTANCE_RATIO, "met": figures["vtsds_over_sds"] <= ACCEPTANCE_RATIO},
    }


def default_cpu_model(quick: bool) -> tuple[str, SmallModelConfig | None, str]:
    """The CPU suite's model: the built-in one when shipped, else a small model written for the run."""
    if quick:
        return "small", SmallModelConfig.tiny(), "quick: a tiny random model (SmallModelConfig.tiny())"
    if (builtin_model_dir() / "unet").is_dir():
        return BUILTIN, None, ""
    note = f"the built-in model is absent ({builtin_model_dir()}): a random model with SmallModelConfig() sizes"
    return "small", SmallModelConfig(), note


def plan_suites(
    device: str,
    model: str | None,
    quick: bool,
    steps: int,
    warmup: int,
    schedule_steps: int,
    personalize_mode: str = "lora",
    render_resolution: int = 0,
    recon_rays: int = 0,
    seed: int = 0,
) -> tuple[list[SuitePlan], list[dict[str, str]]]:
    """The suites to run on this machine and those skipped (with why).

    CPU: the built-in model (or a small stand-in), the avatarstudio-recon-cpu sizes, 64 px renders. CUDA: the
    paper's settings, Stable Diffusion 1.5 shapes in fp16 (512 px guidance), avatarstudio-recon sizes, 256 px
    renders. ``quick`` shrinks everything for a smoke test.
    """
    common = dict(steps=steps, warmup=warmup, schedule_steps=schedule_steps, seed=seed)
    common["personalize_mode"] = personalize_mode
    plans, skipped = [], []
    if device in ("auto", "cpu"):
        name, sizes, note = default_cpu_model(quick) if model is None else (model, None, "")
        rays = recon_rays or (64 if quick else preset_rays("cpu"))
        side = render_resolution or (16 if quick else 64)
        plans.append(SuitePlan("cpu", name, sizes, note, "fp32", "cpu", rays, side, **common))
    if device in ("auto", "cuda") and not torch.cuda.is_available():
        skipped.append({"device": "cuda", "reason": "no CUDA GPU here (torch.cuda.is_available() is False)"})
    elif device in ("auto", "cuda"):
        name, sizes, note = ("small", SmallModelConfig.tiny(), "quick") if quick else (model or SD15_RANDOM, None, "")
        rays = recon_rays or (64 if quick else preset_rays("gpu"))
        side = render_resolution or (16 if quick else 256)
        plans.append(SuitePlan("cuda", name, sizes, note, "fp16", "gpu", rays, side, **common))
    return plans, skipped


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: CPU count, torch threads and version, load average."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    return info


def run_bench(plans: list[SuitePlan], skipped: list[dict[str, str]], output: Path | None) -> dict[str, Any]:
    """Run the suites, write the JSON report atomically to ``output`` (when given) and return it."""
    report: dict[str, Any] = {"machine": machine_info(), "skipped": skipped, "suites": []}
    start = time.perf_counter()
    for plan in plans:
        report["suites"].append(run_suite(plan))
    report["machine"]["wall_s"] = time.perf_counter() - start
    if hasattr(os, "getloadavg"):
        report["machine"]["loadavg_end"] = list(os.getloadavg())
    if output is not None:
        atomic_write_text(Path(output), json.dumps(report, indent=2) + "\n")
    return report


def print_report(report: dict[str, Any]) -> None:
    """One rich table per suite, then the skipped suites."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    machine = report["machine"]
    console.print(
        f"{machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"load average {machine.get('loadavg_start')} -> {machine.get('loadavg_end')}"
    )
    for suite in report["suites"]:
        s, f = suite["settings"], suite["figures"]
        table = Table(title=f"{suite['device']} ({suite['device_name']}): {suite['model']['name']} model")
        for column in ("measure", "median s", "min s", "peak MiB", "notes"):
            table.add_column(column, justify="left" if column in ("measure", "notes") else "right")
        for name, m in suite["measures"].items():
            table.add_row(name, f"{m['median_s']:.4f}", f"{m['min_s']:.4f}", f"{m['peak_mib']:.0f}", _notes(m))
        table.add_row("vtsds_expected", f"{f['vtsds_expected_s']:.4f}", "", "", f"{suite['high_fraction']:.1%} t > K")
        console.print(table)
        met = "[green]met[/green]" if suite["acceptance"]["met"] else "[red]NOT met[/red]"
        console.print(
            f"VT-SDS / SDS over a {s['schedule_steps']}-step run: {f['vtsds_over_sds']:.2f}x (target <= "
            f"{ACCEPTANCE_RATIO}x: {met}); above K only: {f['vtsds_above_k_over_sds']:.2f}x; whole edit step: "
            f"{f['edit_step_vtsds_over_sds']:.2f}x. Timed {s['steps']} after {s['warmup']} warm-up iterations."
        )
        if suite["model"]["note"]:
            console.print(f"Model: {suite['model']['note']}.")
    for skip in report["skipped"]:
        console.print(f"[yellow]Skipped the {skip['device']} suite[/yellow]: {skip['reason']}.")


def _notes(m: dict[str, Any]) -> str:
    def short(value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(short(v) for v in value) + "]"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={short(v)}" for k, v in (m.get("extra") or {}).items())
