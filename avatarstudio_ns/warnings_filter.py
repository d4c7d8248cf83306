"""Silences the warnings that our dependencies raise about their own code, and nothing else.

With torch 2.14 and nerfstudio 1.1.5, every ``avatarstudio`` command printed torch's ``torch.jit.script``
deprecation (nerfstudio's camera_utils decorates two functions with it at import), and every run printed torch's
indexing deprecation from nerfstudio's ray generation, plus a few more deprecations from nerfstudio's trainer
and viewer. None of them is about our code and a user cannot act on them. Each filter below names the message and
the module the warning is attributed to (always the dependency's), so the same warnings raised from our code still
show.

Deliberately not filtered: torchmetrics' deprecation of importing metrics from ``torchmetrics.functional`` (our own
import path triggers it; importing from ``torchmetrics.functional.image`` avoids it).

The filters are installed when the package is imported: first thing in the ``avatarstudio`` command, and when
nerfstudio imports the plugin (ns-train, ns-viewer, ns-render, ...) before it builds cameras and trainers.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class DependencyWarning:
    """One known warning of a dependency, as ``warnings.filterwarnings`` matches it."""

    category: type[Warning]
    """Warning class."""
    message: str
    """Regular expression matching the start of the message."""
    module: str
    """Exact name of the module the warning is attributed to (the frame that raises it)."""
    origin: str
    """What triggers it, for the reader."""


DEPENDENCY_WARNINGS: tuple[DependencyWarning, ...] = (
    DependencyWarning(
        FutureWarning,
        r"`torch\.jit\.script` is deprecated",
        "torch.jit._script",
        "nerfstudio/cameras/camera_utils.py decorates functions with @torch.jit.script at import (torch >= 2.10); "
        "our code does not use torch.jit",
    ),
    DependencyWarning(
        UserWarning,
        r"Using a non-tuple sequence for multidimensional indexing is deprecated",
        "nerfstudio.cameras.cameras",
        "Cameras._generate_rays_from_coords indexes fx, fy, cx, cy, camera_to_worlds, camera_type, ... with a list "
        "of index tensors (torch's C++ indexing code attributes it to the indexing line)",
    ),
    DependencyWarning(
        FutureWarning,
        r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated",
        "nerfstudio.field_components.activations",
        "nerfstudio's trunc_exp decorates its autograd function with torch.cuda.amp.custom_fwd/custom_bwd",
    ),
    DependencyWarning(
        FutureWarning,
        r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
        "nerfstudio.engine.trainer",
        "nerfstudio's Trainer builds torch.cuda.amp.GradScaler",
    ),
    DependencyWarning(
        UserWarning,
        r"Converting a tensor with requires_grad=True to a scalar",
        "nerfstudio.utils.writer",
        "nerfstudio's trainer logs the loss dict (tensors in the graph) and the writer calls float() on them",
    ),
    DependencyWarning(
        UserWarning,
        r"This DataLoader will create \d+ worker processes in total",
        "torch.utils.data.dataloader",
        "nerfstudio 1.1.5's VanillaDataManager fixes its image loader at 4 workers (no option changes it), more than a "
        "2-core machine has; a user cannot act on it",
    ),
    # DeprecationWarnings are hidden outside __main__ by default; these two showed under pytest and `-W default`.
    DependencyWarning(
        DeprecationWarning,
        r"websockets\.connection was renamed",
        "websockets.connection",
        "viser (nerfstudio's viewer, imported with nerfstudio) imports websockets' old module names",
    ),
    DependencyWarning(
        DeprecationWarning,
        r"websockets\.legacy is deprecated",
        "websockets.legacy",
        "viser imports websockets.legacy",
    ),
)
"""Every dependency warning that our commands and methods triggered (torch 2.14, nerfstudio 1.1.5)."""


def silence_dependency_warnings() -> None:
    """Ignores ``DEPENDENCY_WARNINGS``, unless the user chose warning filters with ``-W`` or ``PYTHONWARNINGS``.

    Safe to call more than once: ``warnings.filterwarnings`` replaces an identical filter instead of adding one.
    """
    if sys.warnoptions:  # an explicit choice, e.g. `-W default` to see everything, wins
        return
    for known in DEPENDENCY_WARNINGS:
        # filterwarnings matches the module with re.match: anchor the end too, or 'torch.jit._script' would
        # also match a module named 'torch.jit._scripts'.
        module = re.escape(known.module) + r"\Z"
        warnings.filterwarnings("ignore", message=known.message, category=known.category, module=module)
