"""Bring images to the square resolution a diffusion model works at, identically for training and guidance."""

from __future__ import annotations

import torch
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


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)^2 window around each pixel (windows cut at the image border)."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(
    values: Float[Tensor, "b 1 h w"], guide: Float[Tensor, "b 3 h w"], radius: int, eps: float = 1e-3
) -> Float[Tensor, "b 1 h w"]:
    """Edge-aware smoothing of ``values`` by a colour ``guide`` (He, Sun and Tang's guided filter).

    Within each window the output is an affine function of the guide's colour fitted to ``values``, so a coarse map
    (a relevance map upsampled from latent cells) takes the image's edges: it changes where the colour changes.

    Args:
        values: The map to filter.
        guide: The image whose edges the result follows, RGB.
        radius: Window radius in pixels (about one coarse cell, so each window sees both sides of an edge).
        eps: Regulariser of the fit; colour variations below about sqrt(eps) count as flat.
    """
    mean_guide, mean_values = _box(guide, radius), _box(values, radius)
    covariance_gv = _box(guide * values, radius) - mean_guide * mean_values
    products = (guide[:, :, None] * guide[:, None]).flatten(1, 2)  # b 9 h w
    covariance_gg = (_box(products, radius) - (mean_guide[:, :, None] * mean_guide[:, None]).flatten(1, 2)).unflatten(
        1, (3, 3)
    )
    system = covariance_gg.permute(0, 3, 4, 1, 2) + eps * torch.eye(3, device=guide.device, dtype=guide.dtype)
    slope = torch.linalg.solve(system, covariance_gv.permute(0, 2, 3, 1)[..., None])[..., 0].permute(0, 3, 1, 2)
    offset = mean_values - (slope * mean_guide).sum(dim=1, keepdim=True)
    return (_box(slope, radius) * guide).sum(dim=1, keepdim=True) + _box(offset, radius)
