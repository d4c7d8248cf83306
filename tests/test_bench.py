"""Smoke test of ``avatarstudio bench --quick``: the report has every figure, all positive."""

from __future__ import annotations

import json

import pytest

from avatarstudio_ns.scripts.bench.command import BenchCommand
from avatarstudio_ns.threads import torch_threads
from method_configs.edit import avatarstudio_edit

FIGURES = [
    *(f"{name}_{unit}" for name in ("recon_step", "personalize_step", "edit_step") for unit in ("s", "peak_mib")),
    *(f"{name}_{unit}" for name in ("vtsds_above_k", "vtsds_below_k", "sds") for unit in ("s", "peak_mib")),
    "vtsds_expected_s",
    "vtsds_over_sds",
    "vtsds_above_k_over_sds",
    "edit_step_expected_s",
    "edit_step_vtsds_over_sds",
]


@pytest.fixture
def one_thread():
    """Tiny models run several times faster on one thread than on a few contended ones."""
    with torch_threads(1):
        yield


def test_quick_bench_writes_every_figure(tmp_path, one_thread):
    output = tmp_path / "bench.json"
    BenchCommand(output=output, device="cpu", steps=1, warmup=1, quick=True, schedule_steps=200).main()

    report = json.loads(output.read_text())
    assert len(report["machine"]["loadavg_start"]) == 3
    (suite,) = report["suites"]
    assert suite["device"] == "cpu"
    missing = [name for name in FIGURES if name not in suite["figures"]]
    assert not missing, f"missing figures: {missing}"
    assert all(value > 0 for value in suite["figures"].values()), suite["figures"]
    # The branches were pinned as intended: the personalised model joins above K only.
    assert suite["measures"]["vtsds_above_k"]["extra"]["v"][0] < 1
    assert suite["measures"]["vtsds_below_k"]["extra"]["v"][0] == 1
    assert 0 < suite["high_fraction"] < 1
    # The edit step is the edit pipeline's own (the fast preset's losses, on the branch above K), not a copy of it.
    edit = suite["measures"]["edit_step"]["extra"]
    assert edit["losses"] == ["identity_loss", "opacity_entropy", "vtsds"]
    assert min(edit["t"]) > avatarstudio_edit.config.pipeline.guidance.k_timestep
