"""Timestep range annealing and per-timestep weights for score distillation (METHOD section 4)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

AnnealMode = Literal["linear", "sqrt", "none"]
Weighting = Literal["one_minus_alphabar", "sds", "uniform"]


def annealed_t_max(
    step: int, total_steps: int, start: float = 0.98, end: float = 0.5, mode: AnnealMode = "linear"
) -> float:
    """Upper end of the timestep range (a fraction of the schedule) at an optimisation step.

    t_max falls from ``start`` to ``end`` over the run (Magic3D): early steps see heavy noise and set the
    outline of the edit, late steps see light noise and add detail.

    Args:
        step: Current step (clamped to [0, total_steps]).
        total_steps: Length of the run.
        start: t_max at step 0.
        end: t_max at the last step.
        mode: ``linear`` in the step, ``sqrt`` (falls faster early), or ``none`` (fixed at ``start``).
    """
    if mode == "none" or total_steps <= 0:
        return start
    progress = min(max(step / total_steps, 0.0), 1.0)
    if mode == "sqrt":
        progress = math.sqrt(progress)
    elif mode != "linear":
        raise ValueError(f"Unknown anneal mode {mode!r}; expected linear, sqrt or none.")
    return start + (end - start) * progress


def sds_weight(alphabar: Float[Tensor, " b"], weighting: Weighting = "one_minus_alphabar") -> Float[Tensor, " b"]:
    """w(t) of the score distillation gradient.

    ``one_minus_alphabar`` (the spec's default, DreamFusion): 1 - alphabar_t = sigma_t^2.
    ``sds``: sqrt(alphabar_t) * sqrt(1 - alphabar_t) (the weight that makes the gradient the x0 residual).
    ``uniform``: 1.
    """
    if weighting == "one_minus_alphabar":
        return 1.0 - alphabar
    if weighting == "sds":
        return alphabar.sqrt() * (1.0 - alphabar).sqrt()
    if weighting == "uniform":
        return torch.ones_like(alphabar)
    raise ValueError(f"Unknown weighting {weighting!r}; expected one_minus_alphabar, sds or uniform.")
