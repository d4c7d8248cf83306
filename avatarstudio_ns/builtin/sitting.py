"""A sitting: the wall-clock time one invocation of the training command may run.

The built-in model's training is longer than a work session on a 2-core CPU, so it runs in sittings: when the
time of one is up, the stage in progress writes its checkpoint and raises :class:`SittingOver`; running the same
command again continues from that checkpoint. Every stage's result is the same as in one uninterrupted run.
"""

from __future__ import annotations

import time


class SittingOver(Exception):
    """The sitting's time is up; everything done so far is checkpointed and the same command continues it."""


class Sitting:
    """The deadline of one invocation.

    Args:
        minutes: Wall-clock minutes from now; None never ends.
    """

    def __init__(self, minutes: float | None = None) -> None:
        self.minutes = minutes
        self.start = time.monotonic()

    def minutes_left(self) -> float:
        """Minutes until the end (infinite without one)."""
        if self.minutes is None:
            return float("inf")
        return self.minutes - (time.monotonic() - self.start) / 60.0

    def over(self) -> bool:
        """Whether the time is up."""
        return self.minutes_left() <= 0.0

    def stop(self, where: str) -> SittingOver:
        """The exception a stage raises once it has checkpointed, naming where it stopped."""
        return SittingOver(f"the sitting of {self.minutes:g} min is over ({where}); run the same command to continue")
