"""A multi-resolution dense feature grid, looked up with ``grid_sample``.

The deformation field only needs coarse, smooth features of the world position; a few dense grids
are much cheaper on the CPU than the torch hash grid (one fused trilinear lookup per level instead
of eight hashed gathers), and they need no custom CUDA kernels on the GPU either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class DenseGridEncoding(nn.Module):
    """Trilinearly interpolated features from one dense grid per resolution, concatenated.

    Args:
        resolutions: grid resolution (vertices per side) of each level.
        features_per_level: feature channels stored at every vertex.
        init_scale: features start uniform in [-init_scale, init_scale].
    """

    def __init__(
        self, resolutions: Sequence[int] = (16, 32, 64), features_per_level: int = 4, init_scale: float = 1e-3
    ):
        super().__init__()
        self.resolutions = tuple(int(r) for r in resolutions)
        self.features_per_level = features_per_level
        self.grids = nn.ParameterList(
            [
                nn.Parameter((torch.rand(1, features_per_level, r, r, r) * 2.0 - 1.0) * init_scale)
                for r in self.resolutions
            ]
        )

    def get_out_dim(self) -> int:
        """Number of features returned per position."""
        return len(self.resolutions) * self.features_per_level

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs out_dim"]:
        """Looks up the features of positions normalised to [0, 1]^3 (outside values clamp to the border).

        Args:
            positions: positions normalised to the unit cube.
        """
        batch_shape = positions.shape[:-1]
        # grid_sample wants coordinates in [-1, 1] laid out as a [1, N, 1, 1, 3] volume of queries.
        coords = (positions.reshape(1, -1, 1, 1, 3) * 2.0 - 1.0).to(self.grids[0].dtype)
        features = [
            F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
            for grid in self.grids
        ]
        # [1, C, N, 1, 1] per level -> [N, L * C]
        out = torch.cat(features, dim=1).reshape(self.get_out_dim(), -1).transpose(0, 1)
        return out.reshape(*batch_shape, self.get_out_dim())
