"""Fixes for the environments nerfstudio 1.1.5 runs in today, applied when the plugin is imported.

nerfstudio imports every registered plugin before it loads a checkpoint or renders, so these take effect
in ns-train, ns-viewer, ns-render, ns-eval and ns-export alike.
"""

from __future__ import annotations

import os
import shutil
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


def use_bundled_ffmpeg() -> None:
    """Make imageio-ffmpeg's binary the ``ffmpeg`` of this process when none is on PATH.

    ns-render checks for ``ffmpeg`` on PATH and mediapy runs it by name, so a link named ``ffmpeg`` goes in a
    cache folder appended to PATH (a system ffmpeg, when present later on PATH, still wins).
    """
    if shutil.which("ffmpeg") is not None:
        return
    try:
        # optional (imageio-ffmpeg): only needed when no ffmpeg is on PATH, and a missing one must not break the plugin
        import imageio_ffmpeg
    except ImportError:
        return
    folder = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "avatarstudio" / "bin"
    link = folder / "ffmpeg"
    try:
        if not link.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".ffmpeg.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
            os.replace(tmp, link)
    except (OSError, RuntimeError):
        return  # no writable cache or no bundled binary: ns-render will say ffmpeg is missing
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), str(folder)])
