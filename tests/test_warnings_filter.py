"""Warnings that dependencies raise about their own code stay quiet; warnings from our code still show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings

from avatarstudio_ns.warnings_filter import DEPENDENCY_WARNINGS, silence_dependency_warnings

DEPENDENCY_TEXT = ("torch.jit.script", "non-tuple sequence", "deprecated", "Warning")
"""Text of the dependency warnings that `avatarstudio` printed (see avatarstudio_ns/warnings_filter.py)."""


def run_python(*args: str) -> subprocess.CompletedProcess:
    """Runs a Python process with Python's default warning filters (no -W or PYTHONWARNINGS from outside)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_cli_help_prints_no_dependency_warnings():
    command = shutil.which("avatarstudio")
    cli = [command] if command else [sys.executable, "-m", "avatarstudio_ns.scripts.main"]
    result = run_python(*cli, "--help")
    assert result.returncode == 0, result.stderr
    assert "synth" in result.stdout
    for text in DEPENDENCY_TEXT:
        assert text not in result.stderr, f"stderr of avatarstudio --help:\n{result.stderr}"


# nerfstudio imports the plugin (entry points) before it builds cameras; the script does the same, generates
# rays the way the ray generator does (indices [num_rays, 1]), then raises the same two warnings from a module
# of our package, as if our own code had triggered them.
RAYS_THEN_OUR_WARNINGS = textwrap.dedent(
    """
    import avatarstudio_ns
    import torch
    from nerfstudio.cameras.cameras import Cameras

    cameras = Cameras(
        camera_to_worlds=torch.eye(4)[:3].expand(2, 3, 4), fx=10.0, fy=10.0, cx=8.0, cy=8.0, width=16, height=16,
        times=torch.tensor([[0.0], [1.0]]),
    )
    rays = cameras.generate_rays(camera_indices=torch.tensor([[0], [1]]), coords=torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert rays.origins.shape == (2, 3)
    print("rays ok", flush=True)

    ours = '''
    import warnings
    import torch
    warnings.warn("`torch.jit.script` is deprecated in our code too", FutureWarning)
    torch.zeros(2, 2)[[torch.tensor([0]), torch.tensor([1])]]
    '''
    exec(compile(ours, "avatarstudio_ns/probe.py", "exec"), {"__name__": "avatarstudio_ns.probe"})
    """
)


def test_ray_generation_is_quiet_but_our_warnings_show():
    result = run_python(sys.executable, "-c", RAYS_THEN_OUR_WARNINGS)
    assert result.returncode == 0, result.stderr
    assert "rays ok" in result.stdout
    # Python prints a warning as '<file>:<line>: <category>: <message>'.
    shown = [line for line in result.stderr.splitlines() if "Warning: " in line]
    assert [line.split(": ", 2)[1] for line in shown] == ["FutureWarning", "UserWarning"], result.stderr
    assert all(line.startswith("avatarstudio_ns/probe.py:") for line in shown), "only our module's warnings"
    assert "nerfstudio" not in result.stderr, result.stderr


SEEN = {
    "torch.jit._script": "`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`.",
    "nerfstudio.cameras.cameras": "Using a non-tuple sequence for multidimensional indexing is deprecated and will be "
    "changed in pytorch 2.9; use x[tuple(seq)] instead of x[seq].",
    "nerfstudio.field_components.activations": "`torch.cuda.amp.custom_bwd(args...)` is deprecated. Please use "
    "`torch.amp.custom_bwd(args..., device_type='cuda')` instead.",
    "nerfstudio.engine.trainer": "`torch.cuda.amp.GradScaler(args...)` is deprecated. Please use "
    "`torch.amp.GradScaler('cuda', args...)` instead.",
    "nerfstudio.utils.writer": "Converting a tensor with requires_grad=True to a scalar may lead to unexpected "
    "behavior.\nConsider using tensor.detach() first.",
    "torch.utils.data.dataloader": "This DataLoader will create 4 worker processes in total. Our suggested max number "
    "of worker in current system is 2, which is smaller than what this DataLoader is going to create.",
    "websockets.connection": "websockets.connection was renamed to websockets.protocol and Connection was renamed "
    "to Protocol",
    "websockets.legacy": "websockets.legacy is deprecated; see https://websockets.readthedocs.io/en/stable/howto/"
    "upgrade.html for upgrade instructions",
}
"""A message of each filtered warning, as torch 2.14 and websockets word it, by the module it is attributed to."""


def test_each_filter_matches_its_dependency_module_only(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", [])
    assert {known.module for known in DEPENDENCY_WARNINGS} == set(SEEN)
    for known in DEPENDENCY_WARNINGS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_dependency_warnings()
            for module in (known.module, "avatarstudio_ns.recon.model", known.module + "_next"):
                warnings.warn_explicit(SEEN[known.module], known.category, "file.py", 1, module=module)
            warnings.warn_explicit("another message", known.category, "file.py", 2, module=known.module)
        shown = [(w.message.args[0], w.lineno) for w in caught]
        assert shown == [(SEEN[known.module], 1), (SEEN[known.module], 1), ("another message", 2)], known.module


def test_explicit_warning_options_win(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", ["default"])  # as after `python -W default`
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_dependency_warnings()
        warnings.warn_explicit(SEEN["torch.jit._script"], FutureWarning, "file.py", 1, module="torch.jit._script")
    assert len(caught) == 1
