"""Image metrics that never download anything: PSNR, SSIM, and LPIPS only when its weights are local."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""torchvision's AlexNet weights, which torchmetrics' LPIPS backbone downloads when missing."""

_LPIPS_CACHE: dict[str, Callable[[Tensor, Tensor], Tensor] | None] = {}


def psnr(pred: Float[Tensor, "*bs 3"], target: Float[Tensor, "*bs 3"]) -> Tensor:
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def ssim(pred: Float[Tensor, "1 3 H W"], target: Float[Tensor, "1 3 H W"]) -> Tensor:
    """Structural similarity of [1, 3, H, W] images in [0, 1]."""
    # heavy (torchmetrics, ~450 modules): imported on first use, so --help and plugin loading stay fast
    from torchmetrics.functional import structural_similarity_index_measure

    return structural_similarity_index_measure(pred, target, data_range=1.0)  # type: ignore[return-value]


def lpips_if_available(device: torch.device) -> Callable[[Tensor, Tensor], Tensor] | None:
    """Returns an LPIPS function when the AlexNet weights are already on disk, else None.

    The metric is built once per device and kept out of any model's state dict, so checkpoints are
    the same on machines with and without the weights.
    """
    key = str(device)
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = None
        weights = os.path.join(torch.hub.get_dir(), "checkpoints", _ALEXNET_FILE)
        if os.path.exists(weights):
            try:
                # heavy (torchmetrics, ~450 modules), and only built when the optional AlexNet weights are on disk
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                metric = LearnedPerceptualImagePatchSimilarity(normalize=True).to(device).eval()
                _LPIPS_CACHE[key] = metric
            except Exception:  # a broken optional metric must not break evaluation
                _LPIPS_CACHE[key] = None
    return _LPIPS_CACHE[key]
