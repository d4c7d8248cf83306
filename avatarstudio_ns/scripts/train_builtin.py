"""``avatarstudio train-builtin``: train the built-in diffusion model of synthetic heads, then score it."""

from __future__ import annotations

from dataclasses import dataclass, field

import tyro
from rich.console import Console

from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, evaluate_builtin
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, train_builtin


@dataclass
class TrainBuiltinCommand(TrainBuiltinConfig):
    """Render captioned synthetic heads, train a small latent diffusion model on them (VAE, then UNet and text
    encoder) and write it in the diffusers layout. Re-running with the same --work-dir resumes."""

    evaluate: bool = True
    """After training, train the attribute probe, sample the model and report how well samples follow the
    captions."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """How the model is scored."""

    def main(self) -> None:
        """Train (resuming if possible), export, and optionally evaluate."""
        console = Console()
        train_builtin(self, console)
        if self.evaluate:
            evaluate_builtin(self, self.evaluation, console)


if __name__ == "__main__":
    tyro.cli(TrainBuiltinCommand).main()
