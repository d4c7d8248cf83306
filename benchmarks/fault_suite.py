"""The fault suite at full length (issue 15): every long command SIGKILLed in several chains of seeded faults, at
larger sizes than the tests', each rerun until it finishes; prints, per command, the faults injected and survived
and whether the result equals the uninterrupted run's.

    python benchmarks/fault_suite.py                                  # 3 chains of 5 faults per command, full sizes
    python benchmarks/fault_suite.py --chains 1 --sizes tiny          # what tests/test_faults.py runs
    python benchmarks/fault_suite.py --commands "avatarstudio demo" --fresh   # a new interpreter per start

A chain kills a command during a cache write, at a moment and during a checkpoint write (its plan in
avatarstudio_ns/scripts/fault_commands.py), then during any write and at another moment; the draws follow the
chain's seed. Survived: the kill left no half-written file under a final name, the next start read none, and the
chain ended bitwise equal to the uninterrupted run (see avatarstudio_ns/scripts/faults.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import tyro

from avatarstudio_ns.scripts.fault_commands import Sizes, make_inputs, suite_commands
from avatarstudio_ns.scripts.faults import ChainReport, ForkServer, report_table, run_chains, run_fresh


@dataclass
class FaultSuiteArgs:
    """What to run."""

    output: Path = Path("outputs/fault_suite")
    """Folder of the runs, their logs and traces, and the report (report.md, report.json)."""
    chains: int = 3
    """Chains per command (seeds 0, 1, ...)."""
    extra: tuple[str, ...] = ("write", "time")
    """Faults added to each command's plan: checkpoint, cache, write or time."""
    sizes: Literal["full", "tiny"] = "full"
    """full: longer runs with more checkpoints (the demo's recon resumes mid-run); tiny: the tests' sizes."""
    commands: tuple[str, ...] = ()
    """Commands to run, by name ("avatarstudio demo", "ns-train avatarstudio-recon-cpu", ...); empty: all seven."""
    cores: int = 2
    """Chains run side by side, each pinned to a core of its own."""
    fresh: bool = False
    """Start every run in a new interpreter (its 10-20 s of imports each time) instead of forking it."""
    timeout: float = 1800.0
    """Seconds one start may take before it counts as hung."""


def main(args: FaultSuiteArgs) -> list[ChainReport]:
    """Runs the chains and writes and prints the report."""
    # Absolute: every start runs in its own folder, where a relative --output would name another place.
    args.output = args.output.resolve()
    sizes = Sizes.full() if args.sizes == "full" else Sizes()
    extra = tuple(args.extra)
    cores = sorted(os.sched_getaffinity(0))[: max(1, args.cores)]
    start = time.monotonic()
    servers = [] if args.fresh else [ForkServer(cpus=[core]).start() for core in cores]
    runners = [server.run for server in servers]
    if args.fresh:
        runners = [lambda *a, core=core, **k: run_fresh(*a, cpus=[core], **k) for core in cores]
    try:
        for server in servers:
            server.wait_ready()
        inputs = make_inputs(args.output / "inputs", runners[0], sizes)
        commands = [c for c in suite_commands(inputs, sizes) if not args.commands or c.name in args.commands]
        jobs = [
            (command, args.output / command.name.replace(" ", "_") / f"seed{seed}" / "run", seed, command.plan + extra)
            for seed in range(args.chains)
            for command in commands
        ]
        results = run_chains(jobs, runners, args.timeout, on_report=lambda report: print(report.describe(), flush=True))
    finally:
        for server in servers:
            server.close()
    reports = [
        result
        if isinstance(result, ChainReport)
        else ChainReport(command.name, seed, len(plan), failures=[f"{type(result).__name__}: {result}"])
        for result, (command, _, seed, plan) in zip(results, jobs, strict=True)
    ]

    table = report_table(sorted(reports, key=lambda r: r.command))
    minutes = (time.monotonic() - start) / 60
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    note = (
        f"{args.chains} chain(s) per command, sizes {args.sizes}, "
        f"{'a new interpreter' if args.fresh else 'a fork'} per start, {len(cores)} core(s); {minutes:.1f} min, "
        f"load average at the end {load}."
    )
    args.output.mkdir(parents=True, exist_ok=True)
    details = "\n\n".join(r.describe() for r in sorted(reports, key=lambda r: (r.command, r.seed)))
    (args.output / "report.md").write_text(f"{table}\n\n{note}\n\n```\n{details}\n```\n")
    records = [
        {"command": r.command, "seed": r.seed, "planned": r.planned, "injected": r.injected, "survived": r.survived}
        | {"equal": r.equal, "comparison": r.comparison, "not_injected": r.not_injected, "failures": r.failures}
        | {"faults": [asdict(o.fault) | {"survived": o.survived, "note": o.note} for o in r.outcomes]}
        for r in reports
    ]
    (args.output / "report.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"\n{table}\n\n{note}")
    return reports


if __name__ == "__main__":
    main(tyro.cli(FaultSuiteArgs))
