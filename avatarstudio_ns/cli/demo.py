"""``avatarstudio demo``: the whole pipeline on the built-in synthetic head, offline."""

from __future__ import annotations

from dataclasses import dataclass

from avatarstudio_ns.demo import DemoConfig


@dataclass
class DemoCommand(DemoConfig):
    """Synthetic capture -> recon -> personalise -> VT-SDS edit -> side-by-side video, image grid and scores.

    Re-running reuses every finished stage, so an interrupted demo continues where it stopped.
    """

    def main(self) -> None:
        """Runs the demo."""
        from avatarstudio_ns.demo import run_demo

        run_demo(self)
