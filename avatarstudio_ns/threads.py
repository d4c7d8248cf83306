"""Torch CPU thread count: set for good, or for a block of work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``; else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_torch_threads(count: int) -> None:
    """Sets torch's CPU thread count to ``count``, at most the cores available (0: unchanged).

    More threads than cores only contend; tiny models run several times faster on one thread than on a few
    contended ones.
    """
    if count > 0:
        torch.set_num_threads(min(count, available_cores()))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Runs a block as :func:`set_torch_threads` sets it and restores the previous count after it."""
    previous = torch.get_num_threads()
    set_torch_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
