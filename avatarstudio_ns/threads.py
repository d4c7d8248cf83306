"""Torch CPU thread count: set for good, for a block of work, or for each worker of a process pool."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes of one torch thread each, for work split into independent jobs.

    The workers are spawned, not forked: a forked copy of a process whose torch threads have run (a training run
    that goes on to render its evaluation set) hangs in its first parallel op. One thread each, because the pool
    already keeps the cores busy.
    """
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=set_torch_threads, initargs=(1,))
