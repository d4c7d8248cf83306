"""Timing and peak memory of a job, and a description of the machine they were measured on."""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from avatarstudio_ns.scripts.bench.settings import SuitePlan


@dataclass
class Measurement:
    """Timings and peak memory of one measure."""

    samples: list[float]
    """Seconds of each timed iteration."""
    peak_mib: float = 0.0
    """Peak memory during the measure (MiB): process RSS on the CPU, allocated tensors on CUDA."""
    delta_mib: float = 0.0
    """Peak memory above the level at the measure's start (MiB)."""
    memory_method: str = ""
    """How the peak was taken."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (e.g. the branch a guidance step took)."""

    @property
    def median(self) -> float:
        """Median seconds per iteration."""
        return statistics.median(self.samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the median and minimum."""
        out = {"median_s": self.median, "min_s": min(self.samples), **dataclasses.asdict(self)}
        return out


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], Any]], steps: int, warmup: int, device: torch.device):
    """Seconds per call of each function, the functions alternating so outside load hits all of them alike.

    Returns:
        Name -> list of ``steps`` timings, after ``warmup`` untimed rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def _vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _RSSSampler:
    """Samples the process RSS from a thread (the fallback where the kernel's peak mark cannot be reset)."""

    def __init__(self, interval: float = 0.002) -> None:
        # optional dependency (psutil, not declared by this package): only the fallback where the kernel's peak-RSS
        # mark cannot be reset needs it
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> _RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@contextmanager
def peak_memory(device: torch.device, into: Measurement) -> Iterator[None]:
    """Record the peak memory of the enclosed code into ``into``.

    On CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's reserve). On the
    CPU, torch's allocations bypass Python's allocator, so tracemalloc misses them, and ``ru_maxrss`` is a
    lifetime peak that earlier stages would mask: the kernel's peak-RSS mark (VmHWM) is reset through
    ``/proc/self/clear_refs`` and read back afterwards; elsewhere RSS is sampled every 2 ms with psutil.
    """
    mib = 1024.0 * 1024.0
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        into.memory_method = "torch.cuda.max_memory_allocated"
    elif sys.platform.startswith("linux") and _reset_hwm():
        start = _vm_rss_kib() * 1024
        yield
        peak = _vm_hwm_kib() * 1024
        into.memory_method = "process peak RSS (VmHWM, reset via /proc/self/clear_refs)"
    else:
        with _RSSSampler() as sampler:
            start = sampler.peak
            yield
        peak = sampler.peak
        into.memory_method = "process RSS sampled every 2 ms (psutil)"
    into.peak_mib = peak / mib
    into.delta_mib = max(0.0, (peak - start) / mib)


def measure(fn: Callable[[], Any], plan: SuitePlan) -> Measurement:
    """Time ``fn`` (warm-up excluded) and take its peak memory over the timed iterations."""
    device = torch.device(plan.device)
    for _ in range(plan.warmup):
        fn()
    result = Measurement(samples=[])
    with peak_memory(device, result):
        result.samples = time_interleaved({"fn": fn}, plan.steps, 0, device)["fn"]
    return result


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: CPU count, torch threads and version, load average."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    return info
