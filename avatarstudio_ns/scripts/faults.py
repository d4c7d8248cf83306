"""Fault injection: run a command in a child process, SIGKILL it at a seeded moment or in the middle of a chosen file
write, and check what it leaves behind (the suite of issue 15: ``tests/test_faults.py``, ``benchmarks/fault_suite.py``).

The child is the command itself (``avatarstudio ...`` or ``ns-train ...``, its console entry point called with that
argv) with a few functions wrapped before anything else is imported, so the library is run unchanged:

- every open, ``os.replace``, delete, ``torch.save`` / ``torch.load``, safetensors and OpenCV read or write of a path
  under the watched folder is appended to a trace file (one line each, unbuffered, so it survives the kill);
- a *write fault* names a file (a pattern of its path) and which of its writes in this process (the nth): that write is
  completed, the file cut to half its new length and the process group killed with SIGKILL, as if the machine had
  died during the write;
- a *time fault* is a SIGKILL of the process group from outside, a seeded number of seconds after the start.

Children start in one of two ways: :class:`ForkServer` forks them from a process that has imported nerfstudio,
torch and diffusers once (a fork costs milliseconds where a fresh ``ns-train`` spends 10-20 s importing), or
:func:`run_fresh` starts a new interpreter per run. Both pin the child to one CPU core, so the presets' thread counts
resolve to one thread (as under ``taskset``) and a run is bitwise reproducible on the CPU.

After each kill :func:`broken_files` lists every file that does not load (by its suffix); the rerun's trace then shows
whether it read one of them before replacing it (:func:`read_before_rewrite`). :func:`compare_trees` compares the
final files of two runs, tensor by tensor. :func:`run_chain` puts it together for one command; the commands of the
suite are in :mod:`avatarstudio_ns.scripts.fault_commands`.

Only the standard library is imported at this module's top: the fork server imports it before it wraps the file
functions, and a name a module binds from safetensors at its import would escape the wrapping.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

ENTRY_POINTS = {
    "avatarstudio": ("avatarstudio_ns.scripts.main", "entrypoint"),
    "ns-train": ("nerfstudio.scripts.train", "entrypoint"),
}
"""The console scripts a fault run may start, as pyproject's entry points name them."""

PRELOAD = (
    "nerfstudio.scripts.train",
    "avatarstudio_ns.scripts.main",
    "nerfstudio.utils.eval_utils",
    "diffusers",
    "transformers",
    "peft",
    "cv2",
    "mediapy",
    "rich.markdown",
)
"""What a fork server imports once, before its first fork: every command's own imports, also the lazy ones."""

IGNORED = ("events.out.tfevents.*",)
"""Files no check reads: tensorboard's logs, appended record by record (its reader stops at a cut last record)."""

_RANDOM_PARTS = re.compile(r"(?<=\.)[0-9a-f]{12}(?=\.tmp)|(?<=\.new\.)[\w]{8}|(?<=\.old\.)[\w]{8}")
"""The random parts of the temporary names of avatarstudio_ns.atomic (``.<name>.<12 hex>.tmp<suffix>`` files,
``.<name>.new.<8>`` and ``.<name>.old.<8>`` folders)."""


# --------------------------------------------------------------------------------------------------------------------
# The child: hooks, the command, the fork server's loop.


class _Hooks:
    """The wrapped functions' shared state in a child: the watched folder, the trace file and the write fault."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.trace_fd: int | None = None
        self.pattern: str | None = None
        self.nth = 0
        self.seen = 0
        self.start = 0.0

    def configure(self, root: str, trace: str, pattern: str | None, nth: int) -> None:
        self.root = os.path.abspath(root) + os.sep
        self.trace_fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pattern, self.nth, self.seen = pattern, nth, 0
        self.start = time.monotonic()

    def watched(self, file: Any, dir_fd: int | None = None) -> str | None:
        """``file`` relative to the watched folder, or None when it is not a path under it."""
        if self.root is None or not isinstance(file, (str, bytes, os.PathLike)):
            return None
        try:
            path = os.fsdecode(os.fspath(file))
            if dir_fd is not None and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            path = os.path.abspath(path)
        except (OSError, TypeError, ValueError):
            return None
        return path[len(self.root) :] if path.startswith(self.root) else None

    def event(self, kind: str, path: str, other: str = "") -> None:
        """Appends one line to the trace: what happened, to which path, and when (seconds since the start)."""
        if self.trace_fd is not None:
            seconds = time.monotonic() - self.start
            os.write(self.trace_fd, f"{kind}\t{path}\t{other}\t{seconds:.3f}\n".encode())

    def dies_here(self, path: str) -> bool:
        """Whether this write is the fault's: its pattern matches and it is the nth such write."""
        if self.pattern is None or not fnmatch.fnmatchcase(path, self.pattern):
            return False
        self.seen += 1
        return self.seen == self.nth

    def die(self, absolute: str, path: str, start: int) -> None:
        """Cuts the file just written to half of what this write added, then kills the process group."""
        try:
            size = os.path.getsize(absolute)
            os.truncate(absolute, start + (size - start) // 2)
        except OSError:
            pass
        self.event("fault", path)
        os.killpg(0, signal.SIGKILL)


HOOKS = _Hooks()


class _DyingFile:
    """A file opened for the fault's write: used as the real one, but its close cuts it and kills the process."""

    def __init__(self, file, absolute: str, path: str, start: int) -> None:
        self._file, self._absolute, self._path, self._start = file, absolute, path, start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __iter__(self):
        return iter(self._file)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        HOOKS.die(self._absolute, self._path, self._start)


def _wrap_write(save: Callable, path_arg: int, kind: str = "write") -> Callable:
    """Wraps a function that writes a whole file at its ``path_arg``-th argument (torch.save, cv2.imwrite...)."""

    def wrapper(*args, **kwargs):
        target = args[path_arg] if len(args) > path_arg else None
        path = HOOKS.watched(target)
        if path is None:
            return save(*args, **kwargs)
        HOOKS.event(kind, path)
        dies = HOOKS.dies_here(path)
        result = save(*args, **kwargs)
        if dies:
            HOOKS.die(os.path.abspath(os.fspath(target)), path, 0)
        return result

    return wrapper


def _wrap_read(load: Callable, path_arg: int = 0) -> Callable:
    """Wraps a function that reads the file at its ``path_arg``-th argument."""

    def wrapper(*args, **kwargs):
        path = HOOKS.watched(args[path_arg] if len(args) > path_arg else kwargs.get("filename", kwargs.get("f")))
        if path is not None:
            HOOKS.event("read", path)
        return load(*args, **kwargs)

    return wrapper


def install_hooks() -> None:
    """Wraps the file functions; before the command's modules are imported, so names they import are wrapped too."""
    import builtins
    import io

    import cv2
    import safetensors
    import safetensors.torch
    import torch

    real_open = io.open

    def traced_open(file, mode="r", *args, **kwargs):
        path = HOOKS.watched(file)
        if path is None:
            return real_open(file, mode, *args, **kwargs)
        if not any(flag in mode for flag in "wax+"):
            if os.path.isfile(file):  # not the import system's probes of names that are no files
                HOOKS.event("read", path)
            return real_open(file, mode, *args, **kwargs)
        HOOKS.event("write", path)
        absolute = os.path.abspath(os.fspath(file))
        start = os.path.getsize(absolute) if "a" in mode and os.path.exists(absolute) else 0
        opened = real_open(file, mode, *args, **kwargs)
        return _DyingFile(opened, absolute, path, start) if HOOKS.dies_here(path) else opened

    builtins.open = io.open = traced_open

    def traced_move(move: Callable) -> Callable:
        def wrapper(src, dst, *args, **kwargs):
            source, target = HOOKS.watched(src, kwargs.get("src_dir_fd")), HOOKS.watched(dst, kwargs.get("dst_dir_fd"))
            if source is not None or target is not None:
                HOOKS.event("replace", source or "", target or "")
            return move(src, dst, *args, **kwargs)

        return wrapper

    def traced_delete(delete: Callable) -> Callable:
        def wrapper(path, *args, **kwargs):
            name = HOOKS.watched(path, kwargs.get("dir_fd"))
            if name is not None:
                HOOKS.event("delete", name)
            return delete(path, *args, **kwargs)

        return wrapper

    os.replace, os.rename = traced_move(os.replace), traced_move(os.rename)
    os.unlink, os.remove, os.rmdir = traced_delete(os.unlink), traced_delete(os.remove), traced_delete(os.rmdir)
    torch.save, torch.load = _wrap_write(torch.save, 1), _wrap_read(torch.load)
    safetensors.torch.save_file = _wrap_write(safetensors.torch.save_file, 1)
    safetensors.torch.load_file = _wrap_read(safetensors.torch.load_file)
    safetensors.safe_open = safetensors.torch.safe_open = _wrap_read(safetensors.safe_open)
    cv2.imwrite, cv2.imread = _wrap_write(cv2.imwrite, 0), _wrap_read(cv2.imread)


def _run_command(job: dict) -> int:
    """Runs one command in this (child) process as its console script would; returns its exit status."""
    import importlib
    import traceback

    os.chdir(job["cwd"])
    if job.get("cpus"):
        os.sched_setaffinity(0, set(job["cpus"]))
    HOOKS.configure(job["root"], job["trace"], job.get("pattern"), int(job.get("nth") or 0))
    module, function = ENTRY_POINTS[job["program"]]
    sys.argv = [job["program"], *job["args"]]
    try:
        getattr(importlib.import_module(module), function)()
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1


def _child(job: dict) -> None:
    """The forked or started child: its own process group and log, then the command; never returns."""
    if os.getsid(0) != os.getpid():  # a fork; run_fresh starts its interpreter in a new session already
        os.setsid()
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 1
    try:
        code = _run_command(job)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (a closed stream must not keep the child alive)
                pass
        os._exit(code)


def fresh_main(job_json: str) -> None:
    """Entry of :func:`run_fresh`'s interpreter: hooks first, then the command."""
    install_hooks()
    _child(json.loads(job_json))


def server_main(preload: Sequence[str]) -> None:
    """The fork server: hooks, the imports, then one forked child per job line on stdin.

    Answers each job with ``pid <n>`` when the child is started and ``exit <status>`` when it has ended, on the
    stdout it was started with (the imports' own output goes to stderr).
    """
    import importlib

    import torch

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    install_hooks()
    torch.set_num_threads(1)  # before any fork: a child must not inherit a half-started thread pool
    for name in preload:
        importlib.import_module(name)
    answers.write("ready\n")
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answers.close()
            _child(job)
        answers.write(f"pid {pid}\n")
        _, status = os.waitpid(pid, 0)
        answers.write(f"exit {os.waitstatus_to_exitcode(status)}\n")


# --------------------------------------------------------------------------------------------------------------------
# The parent: starting runs.


@dataclass(frozen=True)
class Fault:
    """Where a run is killed: ``delay`` seconds after its start (time), or during the ``nth`` write in the run of a
    file whose path under the watched folder matches ``pattern`` (write)."""

    kind: Literal["time", "write"]
    delay: float = 0.0
    pattern: str = ""
    nth: int = 1
    label: str = ""
    """What the fault stands for, for the report ("a checkpoint write")."""
    fraction: float | None = None
    """For a time fault: the share of what was left of the run at which it strikes."""

    def describe(self) -> str:
        """One line for the report."""
        if self.kind == "time":
            return f"SIGKILL {self.delay:.1f} s after the start ({self.label})"
        return f"SIGKILL during {self.label}: {self.pattern}"


class Event(NamedTuple):
    """One traced file operation of a child."""

    kind: str
    """read, write, replace (``path`` renamed to ``other``), delete, or fault (the file a write fault cut)."""
    path: str
    """Relative to the watched folder ("" when outside it)."""
    other: str
    seconds: float
    """Since the command started."""


@dataclass
class Run:
    """One start of a command."""

    args: list[str]
    returncode: int
    """The exit status; -9 when killed."""
    seconds: float
    trace: list[Event]
    log: Path
    timed_out: bool = False

    @property
    def killed(self) -> bool:
        """Whether the run died of a SIGKILL."""
        return self.returncode == -signal.SIGKILL

    def fault_path(self) -> str | None:
        """The file a write fault cut, if one did."""
        return next((e.path for e in self.trace if e.kind == "fault"), None)

    def last_events(self, count: int = 3) -> str:
        """The run's last traced events (logs left out), for the report."""
        events = [e for e in self.trace if not _ignored(e.path)][-count:]
        return "; ".join(f"{e.kind} {e.path}" + (f" -> {e.other}" if e.other else "") for e in events)

    def tail(self, lines: int = 40) -> str:
        """The end of the run's output."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


Runner = Callable[..., Run]
"""``run(program, args, root, log, trace, fault=None, timeout=...)``: :meth:`ForkServer.run` or :func:`run_fresh`."""


def _ignored(relative: str) -> bool:
    return any(fnmatch.fnmatch(Path(relative).name, pattern) for pattern in IGNORED)


def read_trace(path: Path) -> list[Event]:
    """A child's trace; a line cut by the kill is dropped."""
    events = []
    if Path(path).exists():
        for line in Path(path).read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                try:
                    events.append(Event(parts[0], parts[1], parts[2], float(parts[3])))
                except ValueError:
                    continue
    return events


def _job(program: str, args: Sequence[str], root: Path, log: Path, trace: Path, fault: Fault | None, cpus) -> dict:
    if program not in ENTRY_POINTS:
        raise ValueError(f"Unknown program {program!r}; one of {list(ENTRY_POINTS)}.")
    Path(trace).unlink(missing_ok=True)
    Path(root).mkdir(parents=True, exist_ok=True)
    write = fault is not None and fault.kind == "write"
    return {
        "program": program,
        "args": list(args),
        "cwd": str(Path(root).resolve()),
        "root": str(Path(root).resolve()),
        "log": str(log),
        "trace": str(trace),
        "pattern": fault.pattern if write else None,
        "nth": fault.nth if write else 0,
        "cpus": list(cpus) if cpus else None,
    }


def _child_environment() -> dict[str, str]:
    """This process's environment with the folder this package was imported from first on the path: a child imports
    the same code (another checkout may be the installed one)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class ForkServer:
    """Starts commands by forking a process that has imported them once (see the module's docstring).

    Use it in a ``with`` block; :meth:`start` and :meth:`wait_ready` start several servers side by side.

    Args:
        cpus: The cores each child is pinned to (None: those of this process).
        preload: Modules imported before the first fork.
    """

    def __init__(self, cpus: Iterable[int] | None = None, preload: Sequence[str] = PRELOAD) -> None:
        self.cpus = tuple(cpus) if cpus is not None else None
        self.preload = tuple(preload)
        self.process: subprocess.Popen | None = None

    def start(self) -> ForkServer:
        """Starts the server's process (its imports take 10-20 s; :meth:`wait_ready` waits for them)."""
        code = f"from avatarstudio_ns.scripts.faults import server_main; server_main({list(self.preload)!r})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=_child_environment(),
        )
        return self

    def wait_ready(self, timeout: float = 600.0) -> ForkServer:
        """Waits until the server has imported everything."""
        if self._answer(timeout) != "ready":
            raise RuntimeError("The fork server did not start in time; its stderr says why.")
        return self

    def __enter__(self) -> ForkServer:
        if self.process is None:
            self.start()
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Ends the server (after the run in progress, if any)."""
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def _answer(self, timeout: float) -> str | None:
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], max(timeout, 0.0))
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("The fork server has died; its stderr says why.")
        return line.strip()

    def run(
        self,
        program: str,
        args: Sequence[str],
        root: Path,
        log: Path,
        trace: Path,
        fault: Fault | None = None,
        timeout: float = 900.0,
    ) -> Run:
        """Runs ``program args`` with ``root`` as its watched folder and working directory.

        Args:
            program: ``avatarstudio`` or ``ns-train``.
            args: Its arguments.
            root: The folder whose files are traced (created).
            log: Where its output goes.
            trace: Where its trace goes.
            fault: How it is killed; None: it runs to its end.
            timeout: Seconds after which it counts as hung and is killed.
        """
        assert self.process is not None and self.process.stdin is not None, "start the server first"
        job = _job(program, args, root, log, trace, fault, self.cpus)
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        pid = int(self._answer(timeout=60).split()[1])
        start = time.monotonic()
        deadline = start + (fault.delay if fault is not None and fault.kind == "time" else timeout)
        answer = self._answer(timeout=deadline - time.monotonic())
        timed_out = False
        if answer is None:
            timed_out = not (fault is not None and fault.kind == "time")
            _kill_group(pid)
            answer = self._answer(timeout=60)
        seconds = time.monotonic() - start
        _kill_group(pid)  # what the command started and left running (a video encoder, data workers)
        return Run(list(args), int(answer.split()[1]), seconds, read_trace(trace), Path(log), timed_out)


def run_fresh(
    program: str,
    args: Sequence[str],
    root: Path,
    log: Path,
    trace: Path,
    fault: Fault | None = None,
    timeout: float = 900.0,
    cpus: Iterable[int] | None = None,
) -> Run:
    """Runs ``program args`` in a new interpreter, its imports included in its time; as :meth:`ForkServer.run`."""
    job = _job(program, args, root, log, trace, fault, cpus)
    code = "import sys; from avatarstudio_ns.scripts.faults import fresh_main; fresh_main(sys.argv[1])"
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(job)], start_new_session=True, env=_child_environment()
    )
    limit = fault.delay if fault is not None and fault.kind == "time" else timeout
    timed_out = False
    try:
        returncode = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = not (fault is not None and fault.kind == "time")
        _kill_group(process.pid)
        returncode = process.wait()
    seconds = time.monotonic() - start
    _kill_group(process.pid)
    return Run(list(args), returncode, seconds, read_trace(trace), Path(log), timed_out)


# --------------------------------------------------------------------------------------------------------------------
# Checks.


def is_temporary(relative: str) -> bool:
    """Whether a path is a temporary (hidden) name: a file or folder being written, not yet renamed into place."""
    return any(part.startswith(".") for part in Path(relative).parts)


def normalise(relative: str) -> str:
    """A path with the random parts of temporary names as ``*``: a pattern matching that write in any run."""
    return _RANDOM_PARTS.sub("*", relative)


def check_file(path: Path) -> str | None:
    """Why the file at ``path`` does not load as its suffix says, or None when it does (or the format is not known:
    text and markdown cannot tell a cut file from a whole one)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".jsonl":
            # A journal: its readers skip a last line that a kill cut; every whole line must be whole JSON.
            text = path.read_text(encoding="utf-8")
            for line in text[: text.rfind("\n") + 1].splitlines():
                json.loads(line)
        elif suffix in (".yml", ".yaml"):
            import yaml

            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.Loader)
            # A cut at a line end can still parse: a config must have every field of its class.
            if dataclasses.is_dataclass(loaded) and not all(
                hasattr(loaded, f.name) for f in dataclasses.fields(loaded)
            ):
                return "fields are missing"
        elif suffix in (".ckpt", ".pt", ".pth"):
            import torch

            torch.load(path, map_location="cpu", weights_only=False)
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            load_file(path)
        elif suffix in (".png", ".jpg", ".jpeg", ".gif"):
            from PIL import Image

            with Image.open(path) as image:
                for frame in range(getattr(image, "n_frames", 1)):
                    image.seek(frame)
                    image.load()
        elif suffix in (".npz", ".npy"):
            import numpy as np

            loaded = np.load(path, allow_pickle=False)
            if suffix == ".npz":
                with loaded:
                    for key in loaded.files:
                        loaded[key]
        elif suffix == ".mp4":
            import imageio.v3 as iio

            iio.imread(path, index=None)
    except Exception as error:  # noqa: BLE001 (any failure to load is the finding)
        return f"{type(error).__name__}: {str(error)[:100]}"
    return None


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file() and not _ignored(p.name))


def final_files(root: Path) -> list[str]:
    """The files under ``root`` that readers take for finished ones: not temporary, not logs."""
    return [f for f in _files(root) if not is_temporary(f)]


def broken_files(root: Path, cut: str | None = None) -> dict[str, str]:
    """Every file under ``root`` that does not load, temporary ones included, with the reason; ``cut`` (the file a
    write fault cut in half) counts as broken whatever its format shows."""
    broken = {}
    for relative in _files(root):
        reason = "cut in half by the fault" if relative == cut else check_file(Path(root) / relative)
        if reason is not None:
            broken[relative] = reason
    return broken


def read_before_rewrite(broken: Iterable[str], trace: Sequence[Event]) -> list[str]:
    """The broken files a run read before it wrote, replaced or deleted them: what must never happen."""
    pending, read = set(broken), []
    for event in trace:
        if event.kind == "read" and event.path in pending:
            read.append(event.path)
            pending.discard(event.path)
        elif event.kind in ("write", "delete", "replace"):
            pending.discard(event.path)
            pending.discard(event.other)
    return read


def _without(value: Any, volatile: Sequence[str]) -> Any:
    """``value`` without the dict keys named in ``volatile``, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, (list, tuple)):
        return type(value)(_without(v, volatile) for v in value)
    return value


def _same(a: Any, b: Any) -> bool:
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if (a.dtype, a.shape) != (b.dtype, b.shape):
            return False
        if a.is_floating_point():  # NaN where the other has NaN is the same value
            return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        return torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def same_file(a: Path, b: Path, volatile: Sequence[str] = ()) -> bool:
    """Whether two files hold the same: tensors equal bit for bit (checkpoints, safetensors), JSON equal, else the
    same bytes; keys named in ``volatile`` (wall-clock times) are left out of checkpoints and JSON."""
    suffix = a.suffix.lower()
    if suffix in (".ckpt", ".pt", ".pth"):
        import torch

        return _same(*(_without(torch.load(p, map_location="cpu", weights_only=False), volatile) for p in (a, b)))
    if suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
            if fa.metadata() != fb.metadata():
                return False
        return _same(load_file(a), load_file(b))
    if suffix == ".json":
        return _without(json.loads(a.read_text()), volatile) == _without(json.loads(b.read_text()), volatile)
    return a.read_bytes() == b.read_bytes()


def compare_trees(reference: Path, run: Path, ignore: Sequence[str] = (), volatile: Sequence[str] = ()) -> list[str]:
    """The differences between the final files of two runs (missing, extra, or other content); empty when equal.

    Args:
        reference: The uninterrupted run's folder.
        run: The interrupted-and-rerun one's.
        ignore: fnmatch patterns of relative paths not compared (logs, wall-clock times).
        volatile: Keys left out of checkpoints and JSON files (wall-clock times).
    """

    def kept(files: list[str]) -> set[str]:
        return {f for f in files if not any(fnmatch.fnmatch(f, p) for p in ignore)}

    a, b = kept(final_files(reference)), kept(final_files(run))
    differences = [f"only in the reference: {f}" for f in sorted(a - b)]
    differences += [f"only after the faults: {f}" for f in sorted(b - a)]
    differences += [
        f"differs: {f}" for f in sorted(a & b) if not same_file(Path(reference) / f, Path(run) / f, volatile)
    ]
    return differences


# --------------------------------------------------------------------------------------------------------------------
# A command under a chain of faults.


@dataclass
class Command:
    """A command as the suite runs it."""

    name: str
    """How the report names it (``ns-train avatarstudio-recon-cpu``)."""
    program: str
    """``avatarstudio`` or ``ns-train``."""
    args: Callable[[Path], list[str]]
    """Its arguments, given the folder it works in."""
    plan: tuple[str | float, ...]
    """The faults of one chain, one per start (see :func:`run_chain`)."""
    rerun: Callable[[Path, list[str]], list[str]] | None = None
    """The arguments of the start after a kill, given the folder and the first arguments; None: the same (commands
    that resume by themselves)."""
    checkpoints: tuple[str, ...] = ()
    """fnmatch patterns of its checkpoint writes (normalised paths, see :func:`normalise`)."""
    caches: tuple[str, ...] = ()
    """fnmatch patterns of its cache writes."""
    ignore: tuple[str, ...] = ()
    """fnmatch patterns of files not compared with the reference run (wall-clock records)."""
    volatile: tuple[str, ...] = ()
    """Keys of checkpoints and JSON files not compared (wall-clock times)."""
    resumes: str = ""
    """What it promises about an interrupted run (the README's words), for the report."""


@dataclass
class FaultOutcome:
    """One injected fault and what followed it."""

    fault: Fault
    where: str
    """Where the run was when it died (its last traced events)."""
    broken: dict[str, str]
    """Files that did not load right after the kill, temporary ones included, with the reason."""
    new_broken: dict[str, str]
    """Those of them that this kill broke (the others an earlier kill left, untouched since)."""
    temporary: list[str] = field(default_factory=list)
    """Temporary files there after the kill: never renamed into place, so no later start may read one, whole or not."""
    read_broken: list[str] = field(default_factory=list)
    """Broken or temporary files that the next start read before rewriting them."""
    next_exit: int | None = None
    """Exit status of the next start (-9: killed by the next fault)."""
    survived: bool = False
    note: str = ""

    @property
    def broken_final(self) -> dict[str, str]:
        """The files this kill left broken under their final names, where a reader takes them for whole ones."""
        return {path: why for path, why in self.new_broken.items() if not is_temporary(path)}

    def settle(self, chain_ok: bool) -> None:
        """Survived: nothing half-written under a final name, nothing half-written read, the next start finished
        or was killed by the next fault, and the chain ended equal to the reference."""
        notes = []
        if self.broken_final:
            notes.append("left half-written: " + ", ".join(f"{p} ({w})" for p, w in self.broken_final.items()))
        if self.read_broken:
            notes.append("the rerun read half-written or temporary files: " + ", ".join(self.read_broken))
        if self.next_exit not in (0, -signal.SIGKILL):
            notes.append(f"the rerun failed (exit {self.next_exit})")
        if not chain_ok:
            notes.append("the chain did not end equal to the reference")
        self.note = "; ".join(notes)
        self.survived = not notes


@dataclass
class ChainReport:
    """A command under one chain of faults."""

    command: str
    seed: int
    planned: int
    outcomes: list[FaultOutcome] = field(default_factory=list)
    not_injected: list[str] = field(default_factory=list)
    """Faults of the plan that could not be injected, and why."""
    finished: bool = False
    equal: bool = False
    comparison: str = ""
    temporary_left: list[str] = field(default_factory=list)
    """Temporary files the killed runs left that no later run removed (litter, never read)."""
    failures: list[str] = field(default_factory=list)
    reference_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def injected(self) -> int:
        return len(self.outcomes)

    @property
    def survived(self) -> int:
        return sum(o.survived for o in self.outcomes)

    def describe(self) -> str:
        """The chain's faults and findings, one line each."""
        lines = [
            f"{self.command} (seed {self.seed}): {self.injected} of {self.planned} faults injected, {self.survived} "
            f"survived; {self.comparison} (reference {self.reference_seconds:.0f} s, faulted runs {self.seconds:.0f} s)"
        ]
        for outcome in self.outcomes:
            state = "survived" if outcome.survived else "NOT survived"
            note = f"; {outcome.note}" if outcome.note else ""
            lines.append(f"  {outcome.fault.describe()}: {state} (died at: {outcome.where}){note}")
        lines += [f"  not injected: {reason}" for reason in self.not_injected]
        if self.temporary_left:
            lines.append(f"  temporary files left (never read): {len(self.temporary_left)}")
        lines += [f"  ! {failure}" for failure in self.failures]
        return "\n".join(lines)


FAULT_KINDS = {"checkpoint": "a checkpoint write", "cache": "a cache write", "write": "a write"}
"""The write faults of a plan, and how the report names them."""


def write_units(trace: Sequence[Event]) -> list[tuple[str, str, float]]:
    """(normalised path written, its final name, when) per write of a run, in order; a temporary file's final name is
    the one it is renamed to (a temporary folder's files follow the folder)."""
    finals: dict[str, str] = {}
    for event in trace:
        if event.kind == "replace" and event.path and event.other:
            finals.setdefault(normalise(event.path), event.other)
    units = []
    for event in trace:
        if event.kind != "write" or _ignored(event.path):
            continue
        pattern, final = normalise(event.path), event.path
        for source, target in finals.items():
            if pattern == source or pattern.startswith(source + "/"):
                final = target + pattern[len(source) :]
                break
        units.append((pattern, final, event.seconds))
    return units


def _frontier(units: Sequence[tuple[str, str, float]], exists: Callable[[str], bool]) -> int:
    """Index of the last write of the reference run whose file exists now (-1: none): a rerun goes on after it."""
    first: dict[str, int] = {}
    for index, (_, final, _) in enumerate(units):
        first.setdefault(final, index)
    return max((index for final, index in first.items() if exists(final)), default=-1)


def pick_fault(
    spec: str | float,
    command: Command,
    reference: Run,
    exists: Callable[[str], bool],
    rng,
) -> tuple[Fault | None, str]:
    """The fault of one start of a chain, and why there is none if so.

    ``"time"`` is a time fault at a fraction drawn with ``rng`` from [0.1, 0.6) (a number: that fraction) of what is
    left of the reference run after the last file that exists now. ``"checkpoint"``, ``"cache"`` or ``"write"`` is a
    write fault on a file of that kind that the next start will write: drawn with ``rng`` among the reference run's
    writes after the last one whose file exists, and whose file does not (any such write when none of that kind is
    left).
    """
    units = write_units(reference.trace)
    frontier = _frontier(units, exists)
    if spec == "time" or isinstance(spec, (int, float)):
        fraction = float(rng.uniform(0.1, 0.6)) if spec == "time" else float(spec)
        done = units[frontier][2] if frontier >= 0 else 0.0
        left = max(reference.seconds - done, 0.5)
        return Fault("time", delay=fraction * left, label=f"{fraction:.0%} of what was left", fraction=fraction), ""
    patterns = {"checkpoint": command.checkpoints, "cache": command.caches, "write": ()}[spec]
    later = [(pattern, final) for pattern, final, _ in units[frontier + 1 :] if not exists(final)]
    candidates = list(
        dict.fromkeys(p for p, _ in later if not patterns or any(fnmatch.fnmatch(p, q) for q in patterns))
    )
    label = FAULT_KINDS[spec]
    if not candidates:
        candidates = list(dict.fromkeys(p for p, _ in later))
        label = f"a write (no {spec} write left)"
    if not candidates:
        return None, f"{FAULT_KINDS[spec]}: the reference run wrote nothing after what is there now"
    return Fault("write", pattern=candidates[int(rng.integers(len(candidates)))], nth=1, label=label), ""


def _run_start(
    command: Command,
    args: Sequence[str],
    folder: Path,
    logs: Path,
    index: int,
    run: Runner,
    fault: Fault | None,
    timeout: float,
) -> Run:
    """One start of a chain. A time fault is planned from the reference's duration, and a rerun can be faster than
    that (the reference's start paid for first imports and cold caches): when the start finishes before its fault,
    the folder is put back as it was and the start runs again, killed at the same fraction of the finished start's
    own duration."""
    backup = folder.with_name(folder.name + ".before_start")
    if fault is not None and fault.kind == "time":
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(folder, backup, symlinks=True)
    try:
        for attempt in range(2):
            result = run(
                command.program, args, folder, logs / f"run{index}.log", logs / f"run{index}.trace", fault, timeout
            )
            if fault is None or fault.kind != "time" or result.killed or result.returncode != 0 or attempt:
                return result
            fraction = fault.fraction if fault.fraction is not None else 0.5
            label = f"{fraction:.0%} of a start that took {result.seconds:.1f} s"
            fault = dataclasses.replace(fault, delay=fraction * result.seconds, label=label)
            shutil.rmtree(folder)
            shutil.copytree(backup, folder, symlinks=True)
        return result
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def run_chain(
    command: Command,
    folder: Path,
    run: Runner,
    seed: int = 0,
    plan: Sequence[str | float] | None = None,
    timeout: float = 900.0,
) -> ChainReport:
    """Runs ``command`` uninterrupted (the reference), then again with one fault per start until a start finishes,
    checking what each kill leaves and what the next start reads, and compares the result with the reference.

    Both work in ``folder`` (the reference is moved aside to ``<folder>.reference`` after its run), so the paths
    recorded in their files are the same and the files compare byte for byte.

    Args:
        command: The command.
        folder: Where it runs (emptied first).
        run: :meth:`ForkServer.run` or :func:`run_fresh`.
        seed: Seed of the draws of write faults.
        plan: One fault per start, in order (default ``command.plan``): ``"checkpoint"``, ``"cache"``, ``"write"`` or
            ``"time"`` (see :func:`pick_fault`).
        timeout: Seconds one start may take before it counts as hung.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    plan = tuple(command.plan if plan is None else plan)
    folder = Path(folder)
    reference_folder = folder.with_name(folder.name + ".reference")
    logs = folder.with_name(folder.name + ".logs")
    for path in (folder, reference_folder, logs):
        shutil.rmtree(path, ignore_errors=True)
    logs.mkdir(parents=True)
    report = ChainReport(command.name, seed, len(plan))

    args = command.args(folder)
    reference = run(command.program, args, folder, logs / "reference.log", logs / "reference.trace", timeout=timeout)
    if reference.returncode != 0:
        raise RuntimeError(
            f"{command.name}: the uninterrupted run failed ({reference.returncode}):\n{reference.tail()}"
        )
    report.reference_seconds = reference.seconds
    folder.rename(reference_folder)
    folder.mkdir(parents=True)

    start = time.monotonic()
    pending: FaultOutcome | None = None
    broken: dict[str, str] = {}
    for index, spec in enumerate([*plan, None]):
        fault = None
        if spec is not None:
            fault, why = pick_fault(spec, command, reference, lambda final: (folder / final).is_file(), rng)
            if fault is None:
                report.not_injected.append(why)
        current = args if index == 0 or command.rerun is None else command.rerun(folder, args)
        result = _run_start(command, current, folder, logs, index, run, fault, timeout)
        if pending is not None:
            pending.read_broken = read_before_rewrite([*pending.broken, *pending.temporary], result.trace)
            pending.next_exit = result.returncode
            report.outcomes.append(pending)
            pending = None
        if result.timed_out:
            report.failures.append(f"start {index} hung (over {timeout:.0f} s); its output ends:\n{result.tail()}")
            break
        if not result.killed:
            if result.returncode != 0:
                report.failures.append(f"start {index} failed ({result.returncode}); its output ends:\n{result.tail()}")
            else:
                report.finished = True
                if fault is not None:
                    report.not_injected.append(f"{fault.describe()}: the start finished first")
            break
        # Files an earlier kill broke and this start did not touch are that kill's finding, not this one's.
        touched = {e.path for e in result.trace if e.kind in ("write", "replace", "delete")}
        touched |= {e.other for e in result.trace if e.kind == "replace"}
        now = broken_files(folder, result.fault_path())
        new = {path: why for path, why in now.items() if path not in broken or path in touched}
        pending = FaultOutcome(fault, result.last_events(), now, new, [p for p in _files(folder) if is_temporary(p)])
        broken = now
    report.seconds = time.monotonic() - start

    if report.finished:
        differences = compare_trees(reference_folder, folder, command.ignore, command.volatile)
        report.equal = not differences
        report.comparison = "bitwise equal" if report.equal else "differs: " + "; ".join(differences[:6])
        report.temporary_left = [f for f in _files(folder) if is_temporary(f)]
        left = {path: why for path, why in broken_files(folder).items() if not is_temporary(path)}
        if left:
            report.equal = False
            report.comparison += "; broken at the end: " + ", ".join(f"{p} ({w})" for p, w in left.items())
    else:
        report.comparison = "did not finish"
    for outcome in report.outcomes:
        outcome.settle(report.finished and report.equal)
    return report


def report_table(reports: Sequence[ChainReport]) -> str:
    """The counts as a markdown table: per command, faults injected and survived, and the result."""
    rows: dict[str, list[ChainReport]] = {}
    for report in reports:
        rows.setdefault(report.command, []).append(report)
    lines = [
        "| command | faults injected | survived | not injected | result against an uninterrupted run |",
        "|---|---|---|---|---|",
    ]
    for name, group in rows.items():
        equal = sum(r.equal for r in group)
        lines.append(
            f"| `{name}` | {sum(r.injected for r in group)} | {sum(r.survived for r in group)} | "
            f"{sum(len(r.not_injected) for r in group)} | bitwise equal in {equal} of {len(group)} chains |"
        )
    return "\n".join(lines)


def run_chains(
    jobs: Sequence[tuple[Command, Path, int, Sequence[str | float] | None]],
    runners: Sequence[Runner],
    timeout: float = 900.0,
    on_report: Callable[[ChainReport], None] | None = None,
) -> list[ChainReport | Exception]:
    """Runs chains side by side, one per runner (a :class:`ForkServer` each, pinned to cores of its own), taking the
    jobs in the order given.

    Args:
        jobs: (command, folder, seed, plan or None) per chain (see :func:`run_chain`).
        runners: One per chain run at a time.
        timeout: Seconds one start may take.
        on_report: Called with each report as its chain ends (progress).

    Returns:
        Each job's report, or the exception that stopped it (its reference run failed), in the jobs' order.
    """
    import queue
    import threading

    todo: queue.Queue[int] = queue.Queue()
    for index in range(len(jobs)):
        todo.put(index)
    results: list[ChainReport | Exception | None] = [None] * len(jobs)

    def work(run: Runner) -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            command, folder, seed, plan = jobs[index]
            try:
                results[index] = report = run_chain(command, folder, run, seed=seed, plan=plan, timeout=timeout)
                if on_report is not None:
                    on_report(report)
            except Exception as error:  # noqa: BLE001 (the others go on; the caller reports it)
                results[index] = error

    threads = [threading.Thread(target=work, args=(run,)) for run in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]
