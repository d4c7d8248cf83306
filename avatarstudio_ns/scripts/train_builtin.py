"""``avatarstudio train-builtin``: train the built-in diffusion model of synthetic heads, then score it."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import tyro
from rich.console import Console

from avatarstudio_ns.builtin.sample_accuracy import SEEN_PROMPTS, EvalConfig, evaluate_builtin
from avatarstudio_ns.builtin.sitting import Sitting, SittingOver
from avatarstudio_ns.builtin.step_timing import estimate_minutes, measure_step_times
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, train_builtin

RESUME_EXIT_CODE = 75
"""Exit status when a sitting ended before the end (EX_TEMPFAIL: run the same command again to continue)."""


@dataclass
class TrainBuiltinCommand(TrainBuiltinConfig):
    """Render captioned synthetic heads, train a small latent diffusion model on them (VAE, then UNet and text
    encoder) and write it in the diffusers layout. Re-running with the same --work-dir resumes; with
    --sitting-minutes it stops in time and exits with status 75 until the model is finished."""

    evaluate: bool = True
    """After training, train the attribute probe, sample the model and report how well samples follow the
    captions."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """How the model is scored."""
    evaluation_minutes: float = 35.0
    """Wall minutes the evaluation may take (it cannot stop half-way: the probes and the samples are not
    checkpointed; three probes take about 18 minutes on one CPU thread); with --sitting-minutes, fewer left leave
    it to the next sitting, which only re-exports first."""
    estimate: bool = False
    """Only time a few steps of every stage here and print the estimated wall time of this schedule; train
    nothing."""

    def main(self) -> None:
        """Train (resuming if possible), export, and optionally evaluate."""
        console = Console()
        if self.estimate:
            self.print_estimate(console)
            return
        sitting = Sitting(self.sitting_minutes)
        try:
            train_builtin(self, console, sitting)
            if self.evaluate:
                if sitting.minutes_left() < self.evaluation_minutes:
                    raise sitting.stop("the model is written; the evaluation is next")
                evaluate_builtin(self, self.evaluation, console, sitting)
        except SittingOver as stop:
            console.print(f"[yellow]Stopped: {stop}.[/yellow]")
            sys.exit(RESUME_EXIT_CODE)

    def print_estimate(self, console: Console) -> None:
        """Measure step times and print the estimated minutes of each stage."""
        times = measure_step_times(self, self.evaluation.probe, self.evaluation.samples_per_prompt)
        prompts = len(self.data.heldout_pairs) + len(SEEN_PROMPTS) if self.evaluate else 0
        minutes = estimate_minutes(
            self,
            times,
            probe_steps=self.evaluation.probe.steps * len(self.evaluation.probe_seeds) if self.evaluate else 0,
            eval_identities=self.evaluation.eval_identities if self.evaluate else 0,
            prompts=prompts,
            inference_steps=self.evaluation.inference_steps,
        )
        console.print(f"Seconds per step (threads {self.threads}, load average {times.load_average}):")
        console.print(
            f"  render {times.render_image:.3f}/image, VAE {times.vae_crop:.3f} (crops) {times.vae_full:.3f} (whole), "
            f"encode {times.encode_image:.4f}/image, UNet {times.unet:.3f}, probe {times.probe:.3f}, "
            f"sampling {times.sample_step:.3f}/prompt/step"
        )
        console.print("Estimated minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()))
        if self.sitting_minutes:
            sittings = math.ceil(minutes["total"] / self.sitting_minutes)
            console.print(f"Sittings of {self.sitting_minutes:g} min: {sittings}")


if __name__ == "__main__":
    tyro.cli(TrainBuiltinCommand).main()
