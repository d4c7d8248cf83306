"""Fixes for the environments nerfstudio 1.1.5 runs in today, applied when the plugin is imported.

nerfstudio imports every registered plugin before it loads a checkpoint or renders, so these take effect
in ns-train, ns-viewer, ns-render, ns-eval and ns-export alike.
"""

from __future__ import annotations

import shutil

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
    """Point mediapy (ns-render's video writer) at imageio-ffmpeg's binary when no ffmpeg is on PATH."""
    if shutil.which("ffmpeg") is not None:
        return
    try:
        import imageio_ffmpeg
        import mediapy
    except ImportError:
        return
    mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
