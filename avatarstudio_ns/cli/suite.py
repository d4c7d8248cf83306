"""``avatarstudio suite``: one default edit on several synthetic identities and prompts, scored as one table."""

from __future__ import annotations

from dataclasses import dataclass

from avatarstudio_ns.eval.suite import SuiteConfig


@dataclass
class SuiteCommand(SuiteConfig):
    """Make synthetic identities that differ in hair colour, skin tone and hair style, reconstruct each, edit each
    with every prompt of a prompt set using the edit preset unchanged, and score every saved checkpoint: writes
    suite.md (the table, with the mean and worst of each measure and the steps each edit needed to reach the
    targets) and suite.json. Finished stages are reused, interrupted ones resumed, scores cached per checkpoint."""

    def main(self) -> None:
        """Runs the suite and prints the table."""
        from rich.markdown import Markdown

        from avatarstudio_ns.eval.suite import CONSOLE, run_suite

        run_suite(self)
        if not self.train_only:
            CONSOLE.print(Markdown((self.output / "suite.md").read_text(encoding="utf-8")))
            CONSOLE.print(f"Table: {self.output / 'suite.md'}; scores: {self.output / 'suite.json'}")
