"""A rich progress bar per training stage that also logs plain lines, so a run logged to a file can be followed."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StageProgress:
    """Progress of one stage: a bar on a terminal, and a log line every ``log_every`` steps.

    Args:
        console: Where to draw and log.
        name: Stage name shown on the bar and the log lines.
        total: Steps of the stage.
        start: Steps already done (a resumed stage).
        log_every: Steps between log lines; 0 logs nothing.
    """

    def __init__(self, console: Console, name: str, total: int, start: int = 0, log_every: int = 50) -> None:
        self.console = console
        self.name = name
        self.total = total
        self.start = start
        self.log_every = log_every
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=not console.is_terminal,
        )
        self.task = self.progress.add_task(name, total=total, completed=start, metrics="")
        self._t0 = time.monotonic()

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, step: int, **metrics: float) -> None:
        """Report that ``step`` steps are done, with the latest metrics."""
        text = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.progress.update(self.task, completed=step, metrics=text)
        if self.log_every and (step % self.log_every == 0 or step == self.total):
            per_step = (time.monotonic() - self._t0) / max(step - self.start, 1)
            eta = per_step * (self.total - step) / 60.0
            self.console.log(f"{self.name} {step}/{self.total} {text} ({per_step:.2f} s/step, {eta:.1f} min left)")
