"""``avatarstudio bench``: seconds per iteration and peak memory of recon, personalisation and edit, and the cost
of VT-SDS against plain SDS over an edit run (see :mod:`avatarstudio_ns.scripts.bench.runner`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from avatarstudio_ns.scripts.bench.runner import plan_suites, print_report, run_bench


@dataclass
class BenchCommand:
    """Measure training costs on this machine: recon, personalisation and edit steps, VT-SDS vs SDS, peak memory.

    The CPU suite always runs (the built-in diffusion model, or a small random stand-in while it is not shipped);
    the CUDA suite runs where a GPU is present, with Stable Diffusion 1.5 shapes (random weights) at the paper's
    settings: 512 px guidance, 256 px renders, fp16.
    """

    output: Path = Path("outputs/bench/bench.json")
    """JSON report (written atomically): machine and load average, settings, every measure, the figures."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Suites to run: auto (CPU, plus CUDA where available), cpu, or cuda."""
    steps: int = 5
    """Timed iterations of each measure (the median is reported)."""
    warmup: int = 2
    """Untimed iterations before the timed ones."""
    model: Optional[str] = None
    """Diffusion model: builtin, a local diffusers folder, or sd15-random (SD 1.5 shapes, random weights). Default:
    builtin on the CPU (a small random model if it is absent), sd15-random on CUDA."""
    quick: bool = False
    """Tiny sizes everywhere (a 32 px random model, 64 rays, 16 px renders): a smoke test of the benchmark."""
    schedule_steps: int = 10000
    """Length of the edit run whose annealed timestep schedule weights the VT-SDS branches (paper: 10 000)."""
    personalize_mode: Literal["lora", "full"] = "lora"
    """Personalisation mode timed: lora (the project's default) or full (the paper's full fine-tune)."""
    render_resolution: int = 0
    """Keyframe render side of the edit step; 0: 64 px on the CPU, 256 px on CUDA (the paper)."""
    recon_rays: int = 0
    """Rays per recon iteration; 0: the recon preset's batch (1024 on the CPU, 4096 on CUDA)."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default (the recon measure uses its preset's thread count)."""
    seed: int = 0
    """Seed of models, rays, images and timesteps."""

    def main(self) -> None:
        """Run the suites, print the tables and write the JSON report."""
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        plans, skipped = plan_suites(
            self.device,
            self.model,
            self.quick,
            self.steps,
            self.warmup,
            self.schedule_steps,
            personalize_mode=self.personalize_mode,
            render_resolution=self.render_resolution,
            recon_rays=self.recon_rays,
            seed=self.seed,
        )
        report = run_bench(plans, skipped, self.output)
        print_report(report)
        print(f"Wrote {self.output}")
