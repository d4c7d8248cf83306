"""Regularisers of the edit (METHOD section 4, step 6)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def opacity_entropy(accumulation: Float[Tensor, "*bs 1"], eps: float = 1e-6) -> Float[Tensor, ""]:
    """Mean binary entropy (base 2) of the accumulated opacity of each ray (Eq. 9).

    L_ent = -(omega log2 omega + (1 - omega) log2 (1 - omega)); 0 for fully empty or fully opaque rays and 1
    for half-transparent ones, so minimising it pushes rays to either hit the head or miss it. The paper
    prints the opposite sign, a typo: that sign would reward fog.

    Args:
        accumulation: Accumulated opacity omega per ray, in [0, 1].
        eps: Clamping margin; keeps log2 finite and the gradient bounded at 0 and 1.
    """
    omega = accumulation.float().clamp(eps, 1.0 - eps)
    entropy = -(omega * torch.log2(omega) + (1.0 - omega) * torch.log2(1.0 - omega))
    return entropy.mean()
