"""Atomic writes of training state and model folders, so that a killed run never leaves a half-written file
where a resumed run (or the model loader) would read it; and a scoped torch thread count."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def save_state(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``.

    Keep ``state`` to tensors, numbers, strings and containers of them: it is read back with
    ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def write_folder_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Build a folder in a temporary sibling with ``write(tmp)``, then move it into place.

    An existing ``folder`` is first renamed aside and deleted only after the new one is in place, so at every
    moment ``folder`` is either the old complete folder, absent for an instant, or the new complete one.

    Args:
        folder: Destination.
        write: Fills the temporary folder it is given.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new.", dir=folder.parent))
    try:
        write(tmp)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
