"""``avatarstudio ablate``: VT-SDS against the paper's ablations and an image-editing baseline, as one table."""

from __future__ import annotations

from dataclasses import dataclass

from avatarstudio_ns.eval.ablate import AblationConfig


@dataclass
class AblateCommand(AblationConfig):
    """Edit one avatar with every method on the same prompts, seeds and budget, then score identity, prompt
    fidelity and temporal consistency of each: writes ablation.md (the table), ablation.json and a side-by-side
    video per prompt. Finished runs are reused, interrupted ones resumed."""

    def main(self) -> None:
        """Runs the ablation and prints the table."""
        from rich.markdown import Markdown

        from avatarstudio_ns.eval.ablate import CONSOLE, run_ablation

        run_ablation(self)
        if not self.train_only:
            table = (self.output / "ablation.md").read_text(encoding="utf-8")
            CONSOLE.print(Markdown(table))
            CONSOLE.print(f"Table: {self.output / 'ablation.md'}; videos: {self.output}/*.mp4")
