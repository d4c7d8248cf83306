"""Bring images to the square resolution a diffusion model works at, identically for training and guidance."""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def to_model_square(images: Float[Tensor, "b 3 h w"], resolution: int) -> Float[Tensor, "b 3 r r"]:
    """Centre-crop to a square, then resize to ``resolution`` (bilinear; antialiased when shrinking).

    Personalisation and VT-SDS both go through this function, so the personalised model is asked about
    exactly the framing it was trained on. Differentiable.
    """
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[..., top : top + side, left : left + side]
    if side == resolution:
        return square
    return F.interpolate(
        square, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=side > resolution
    )
