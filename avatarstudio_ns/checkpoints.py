"""Checkpoint loading and writing helpers shared by every stage."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def allow_numpy_in_weights_only_load() -> None:
    """Allow-list the numpy scalar and dtype types that nerfstudio checkpoints contain.

    nerfstudio 1.1.5 stores numpy floats in its LR scheduler state and loads checkpoints with
    ``torch.load``, which defaults to ``weights_only=True`` from torch 2.6 on. These types hold plain
    numbers, so allowing them keeps the weights-only loader safe.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 has no weights-only allow list
        return
    safe: list = [np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    multiarray = getattr(core, "multiarray", None)
    for name in ("scalar", "_reconstruct"):
        if multiarray is not None and hasattr(multiarray, name):
            safe.append(getattr(multiarray, name))
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        safe.extend(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))
    add_safe_globals(safe)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))
