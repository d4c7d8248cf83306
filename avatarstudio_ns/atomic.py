"""Atomic writes: files and folders are written under a temporary name in their destination folder, then renamed
into place, so a killed run leaves either the old complete file or the new one, never a half-written one where a
resumed run or a loader would read it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def _temporary_name(path: Path, folder: Path | None = None) -> Path:
    """A fresh hidden name next to ``path`` (or in ``folder``) that keeps its suffix (numpy, imageio and mediapy pick
    the format by it; numpy would append ``.npz`` to any other name)."""
    return (folder or path.parent) / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"


def _fsync(path: Path) -> None:
    """Flush ``path``'s contents to disk, so the rename never lands before the data does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(path: Path, save: Callable[[Path], None], temporary_dir: Path | None = None) -> Path:
    """Write ``path`` with ``save(tmp)``, which writes the file it is given (``torch.save``, ``np.savez``, a
    video writer), then rename that file over ``path``.

    If ``save`` raises, ``path`` is left as it was and the temporary file is removed.

    Args:
        path: Destination; replaced if it exists. Its folder is created.
        save: Writes the whole file at the temporary path it is given, which does not exist yet and has the
            suffix of ``path``.
        temporary_dir: Where the temporary file is written instead of beside ``path``, for folders whose readers
            take every name in them for a finished file (nerfstudio's checkpoint folders); it must be on the same
            filesystem as ``path``.

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, None if temporary_dir is None else Path(temporary_dir))
    try:
        save(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes | memoryview, temporary_dir: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_save` (and its ``temporary_dir``)."""

    def write(tmp: Path) -> None:
        # "xb": the name is fresh, so an existing file there would be another writer's.
        with open(tmp, "xb") as f:
            f.write(data)

    return atomic_save(path, write, temporary_dir)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_save`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_folder(folder: Path, write: Callable[[Path], None]) -> Path:
    """Build a folder in a temporary sibling with ``write(tmp)``, then move it into place.

    An existing ``folder`` is first renamed aside and deleted only after the new one is in place, so at every
    moment ``folder`` is either the old complete folder, absent for an instant, or the new complete one. If
    ``write`` raises, ``folder`` is left as it was and the temporary folder is removed.

    Args:
        folder: Destination; replaced if it exists. Its parent is created.
        write: Fills the empty temporary folder it is given.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new.", dir=folder.parent))
    try:
        write(tmp)
        for file in tmp.rglob("*"):
            if file.is_file() and not file.is_symlink():
                _fsync(file)
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
