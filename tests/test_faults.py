"""Faults (issue 15, part 1): each long command is SIGKILLed at seeded points, during a cache write, at a moment and
during a checkpoint write; each rerun continues it, reads no half-written file, and the finished result is the
uninterrupted run's, bit for bit.

The commands run as their console scripts do, in child processes forked from one that has imported them (see
avatarstudio_ns/scripts/faults.py; their sizes and fault plans: fault_commands.py), two at a time, each pinned to a
core of its own so that it trains on one thread: about 2 minutes on the 2-core development machine when nearly idle
(load average 1-2), 3 with other jobs on it (6-8). ``python benchmarks/fault_suite.py`` runs more chains of faults at
larger sizes and prints the counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatarstudio_ns.guidance.dataset_update import DatasetUpdateGuidance, DatasetUpdateGuidanceConfig
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.scripts.fault_commands import make_inputs, suite_commands
from avatarstudio_ns.scripts.faults import (
    ChainReport,
    Command,
    Event,
    ForkServer,
    Run,
    broken_files,
    read_before_rewrite,
    report_table,
    run_chain,
    run_chains,
)

SEED = 0
COMMANDS = (
    "avatarstudio demo",
    "avatarstudio ablate",
    "ns-train avatarstudio-edit-fast",
    "ns-train avatarstudio-recon-cpu",
    "avatarstudio train-builtin",
    "avatarstudio personalize",
    "avatarstudio synth",
)
"""Longest first, so that the two cores finish together."""

LINUX = hasattr(os, "sched_setaffinity")
"""The harness forks, starts process groups and pins processes to cores with Linux's calls."""


@pytest.fixture(scope="module")
def reports(tmp_path_factory, tiny_model) -> dict[str, ChainReport | Exception]:
    """Every command's chain of faults, two at a time; command name -> report."""
    root = tmp_path_factory.mktemp("faults")
    servers = [ForkServer(cpus=[core]).start() for core in sorted(os.sched_getaffinity(0))[:2]]
    try:
        for server in servers:
            server.wait_ready()
        inputs = make_inputs(root / "inputs", servers[0].run, model=tiny_model)
        commands = {command.name: command for command in suite_commands(inputs)}
        jobs = [(commands[name], root / name.replace(" ", "_") / "run", SEED, None) for name in COMMANDS]
        results = run_chains(jobs, [server.run for server in servers], timeout=600)
    finally:
        for server in servers:
            server.close()
    print("\n" + report_table([r for r in results if isinstance(r, ChainReport)]))
    return dict(zip(COMMANDS, results, strict=True))


@pytest.mark.skipif(not LINUX, reason="the fault suite needs Linux (fork, setsid, sched_setaffinity)")
@pytest.mark.parametrize("name", COMMANDS)
def test_a_killed_command_resumes_reads_nothing_half_written_and_ends_as_if_never_killed(reports, name):
    report = reports[name]
    if isinstance(report, Exception):
        raise report
    print(report.describe())
    assert report.finished and report.equal, report.describe()
    # A write fault always finds a file still to write; a time fault can come after the end of a short rerun, which
    # the report says (not injected), never silently.
    assert report.injected >= report.planned - 1, report.describe()
    assert report.survived == report.injected, report.describe()


def test_a_cut_file_is_found_and_a_read_of_it_before_a_rewrite_is_caught(tmp_path):
    """The checks themselves: a cut JSON, checkpoint and PNG do not load, whole ones do; a rerun that reads a cut
    file before writing it is caught, one that rewrites or replaces it first is not."""
    (tmp_path / "whole.json").write_text(json.dumps({"a": [1, 2, 3]}))
    torch.save({"w": torch.arange(100)}, tmp_path / "step.ckpt")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "image.png")
    for name in ("step.ckpt", "image.png"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.json").write_text('{"a": [1, 2')
    (tmp_path / ".cut.json.0123456789ab.tmp.json").write_text('{"a"')
    broken = broken_files(tmp_path)
    assert sorted(broken) == [".cut.json.0123456789ab.tmp.json", "cut.json", "cut_image.png", "cut_step.ckpt"]

    rewrite_first = [Event("write", "cut.json", "", 0.0), Event("read", "cut.json", "", 0.1)]
    read_first = [Event("read", "cut_step.ckpt", "", 0.0), Event("write", "cut_step.ckpt", "", 0.1)]
    replaced = [Event("replace", ".cut.json.0123456789ab.tmp.json", "cut.json", 0.0), Event("read", "cut.json", "", 1)]
    assert read_before_rewrite(broken, rewrite_first) == []
    assert read_before_rewrite(broken, read_first) == ["cut_step.ckpt"]
    assert read_before_rewrite(broken, replaced) == []


def test_the_dataset_update_guidance_resumes_with_the_edits_it_had_made(tiny_model):
    """The SDEdit + fit baseline keeps its edited targets outside the model: a checkpoint carries them, so a resumed
    run fits those edits and draws the same noise as the uninterrupted one (its ablation runs resume mid-run only
    from 200 steps on: benchmarks/fault_suite.py runs that)."""
    base = load_diffusion(str(tiny_model), "cpu")
    config = DatasetUpdateGuidanceConfig(prompt="photo of a person with blue hair", update_every=1)
    config.num_inference_steps = 2
    originals = [torch.full((3, 16, 16), 0.25), torch.full((3, 16, 16), 0.75)]
    render = torch.full((1, 3, 16, 16), 0.5)

    uninterrupted = DatasetUpdateGuidance(config, originals, base=base)
    uninterrupted(render, [0], step=0, total_steps=3)
    saved = uninterrupted.resume_state()
    resumed = DatasetUpdateGuidance(config, originals, base=base)
    resumed.load_resume_state(saved)
    assert resumed.edited == [True, False] and torch.equal(resumed.targets[0], uninterrupted.targets[0])
    for guidance in (uninterrupted, resumed):
        guidance(render, [1], step=1, total_steps=3)
    assert torch.equal(resumed.targets[1], uninterrupted.targets[1])  # the same noise drawn for the next edit


def test_a_time_fault_that_a_fast_rerun_outlives_is_injected_into_the_same_start_again(tmp_path):
    """A rerun can take less time than the reference start that planned its time fault (which paid for first imports
    and cold caches); such a start is run again from the folder as it was, killed at the same fraction of its own
    duration, so the fault is injected, not reported missing."""
    starts = []

    def run(program, args, root, log, trace, fault=None, timeout=900.0) -> Run:
        """A command that writes one file after 2 s on its first start and after 0.4 s on every later one."""
        seconds = 2.0 if not starts else 0.4
        starts.append(fault)
        if fault is not None and fault.kind == "time" and fault.delay < seconds:
            return Run(list(args), -9, fault.delay, [], Path(log))
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "result.txt").write_text("done")
        return Run(list(args), 0, seconds, [], Path(log))

    command = Command("example", "avatarstudio", lambda folder: [str(folder)], plan=(0.5,))
    report = run_chain(command, tmp_path / "run", run)
    assert report.finished and report.equal, report.describe()
    assert report.injected == report.planned == 1, report.describe()
    assert [f.delay if f else None for f in starts] == [None, 1.0, 0.2, None]
