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
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.builtin.small_model import SmallModelConfig
from avatarstudio_ns.guidance.loading import BUILTIN, builtin_model_dir
from avatarstudio_ns.scripts.bench.jobs import (
    bench_edit,
    bench_guidance,
    bench_personalize,
    bench_recon,
    build_guidance,
    derived_figures,
    guidance_variants,
    high_fraction,
)
from avatarstudio_ns.scripts.bench.measure import Measurement, machine_info
from avatarstudio_ns.scripts.bench.models import load_bench_model, preset_rays
from avatarstudio_ns.scripts.bench.settings import ACCEPTANCE_RATIO, SD15_RANDOM, SuitePlan


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
        variants = guidance_variants(guidance)
        guidance_results = bench_guidance(plan, variants)
        measures.update(guidance_results)
        fraction = high_fraction(guidance, plan.schedule_steps, plan.seed)
        # The costlier branch: above K both the base and the personalised model run.
        measures["edit_step"] = bench_edit(plan, variants["vtsds_above_k"])
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
