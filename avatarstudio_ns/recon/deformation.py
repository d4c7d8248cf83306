"""The deformation field D: world point p at frame j -> canonical point p_c = p + D(p, e_j).

D is a rigid head motion per frame followed by a small non-rigid offset field; both read the frame code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor, nn

from avatarstudio_ns.recon.grid_encoding import DenseGridEncoding


def axis_angle_to_matrix(axis_angle: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3 3"]:
    """Rotation matrices from axis-angle vectors (Rodrigues), smooth through the zero rotation.

    Args:
        axis_angle: rotation axes scaled by their angles (radians); float32 or wider (the small-angle threshold
            underflows in half precision).

    Returns:
        The rotation matrices.
    """
    theta2 = axis_angle.pow(2).sum(-1, keepdim=True)[..., None]
    small = theta2 < 1e-8
    theta = theta2.clamp_min(1e-8).sqrt()
    # sin(t)/t and (1 - cos(t))/t^2 by their Taylor series near zero, where the closed forms divide by ~0.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-8))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * skew + b * (skew @ skew)


class DeformationField(nn.Module):
    """A cheap deformation: a rigid motion per frame, then coarse features of the moved point and the frame
    code into a tiny MLP that gives a non-rigid offset.

    A head turn moves every point of the head along a different path; as an offset field it would need many
    units to represent, and a small one smears the face across frames. So the rigid part is explicit: a
    rotation about the box centre and a translation, both linear in the frame code (codes between frames
    interpolate, so poses do too), starting at the identity. The non-rigid part (jaw, lips, eyelids) is then
    read in the head's own frame.

    It runs at every proposal and NeRF sample, so it is kept small: a few dense (or hashed) feature
    grids and one hidden layer. The first layer is split in a position part and a code part so the
    code part is computed once per ray and broadcast over the ray's samples. The output layer starts
    near zero, so training starts from the identity deformation.

    Args:
        aabb: scene box [2, 3] that normalises positions for the grid lookup.
        code_dim: dimension of the frame codes.
        encoding: "grid" (dense grids, grid_sample) or "hash" (nerfstudio HashEncoding).
        grid_resolutions: resolutions of the dense grids ("grid" encoding).
        hash_num_levels: levels of the hash grid ("hash" encoding).
        hash_min_res: coarsest hash resolution.
        hash_max_res: finest hash resolution.
        hash_log2_size: log2 of the hash table size per level.
        features_per_level: features per grid level.
        hidden_dim: width of the hidden layers.
        num_hidden_layers: number of hidden layers (at least 1).
        implementation: hash grid implementation ("tcnn" or "torch"), "hash" encoding only.
        rigid: whether a rigid motion per frame comes before the non-rigid offsets.
    """

    aabb: Tensor

    def __init__(
        self,
        aabb: Tensor,
        code_dim: int,
        encoding: Literal["grid", "hash"] = "grid",
        grid_resolutions: Sequence[int] = (16, 32, 64),
        hash_num_levels: int = 4,
        hash_min_res: int = 8,
        hash_max_res: int = 64,
        hash_log2_size: int = 15,
        features_per_level: int = 4,
        hidden_dim: int = 32,
        num_hidden_layers: int = 1,
        implementation: Literal["tcnn", "torch"] = "torch",
        rigid: bool = True,
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone())
        self.rigid_layer: nn.Linear | None = None
        """Frame code -> (axis-angle rotation, translation), zero at initialisation (the identity motion)."""
        if rigid:
            self.rigid_layer = nn.Linear(code_dim, 6)
            nn.init.zeros_(self.rigid_layer.weight)
            nn.init.zeros_(self.rigid_layer.bias)
        if encoding == "grid":
            self.encoding: nn.Module = DenseGridEncoding(grid_resolutions, features_per_level)
        elif encoding == "hash":
            self.encoding = HashEncoding(
                num_levels=hash_num_levels,
                min_res=hash_min_res,
                max_res=hash_max_res,
                log2_hashmap_size=hash_log2_size,
                features_per_level=features_per_level,
                implementation=implementation,
            )
        else:
            raise ValueError(f"Unknown deformation encoding {encoding!r}")
        feature_dim = self.encoding.get_out_dim()
        self.position_layer = nn.Linear(feature_dim, hidden_dim)
        self.code_layer = nn.Linear(code_dim, hidden_dim, bias=False)
        layers: list[nn.Module] = []
        for _ in range(num_hidden_layers - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.output_layer = nn.Linear(hidden_dim, 3)
        # Near-zero (not exactly zero) so the earlier layers get gradients from the first step.
        nn.init.uniform_(self.output_layer.weight, -1e-4, 1e-4)
        nn.init.zeros_(self.output_layer.bias)

    def rigid_motion(
        self, positions: Float[Tensor, "*bs 3"], codes: Float[Tensor, "*code_bs code_dim"]
    ) -> Float[Tensor, "*bs 3"]:
        """Positions moved by the frames' rigid motions: R(e) (p - c) + c + t(e), c the box centre.

        Computed in float32 even under mixed precision: half precision would round the positions by a fraction of
        the finest grid cell and break the small-angle branch of the rotation.

        Args:
            positions: world positions.
            codes: frame codes, broadcastable to the positions' batch shape.

        Returns:
            The moved positions, in the positions' dtype.
        """
        if self.rigid_layer is None:
            return positions
        with torch.autocast(device_type=positions.device.type, enabled=False):
            rotation, translation = self.rigid_layer(codes.float()).split(3, dim=-1)
            centre = self.aabb.mean(dim=0).float()
            offset = (positions.float() - centre).unsqueeze(-1)
            moved = (axis_angle_to_matrix(rotation) @ offset).squeeze(-1) + centre + translation
        return moved.to(positions.dtype)

    def non_rigid_offsets(
        self, positions: Float[Tensor, "*bs 3"], codes: Float[Tensor, "*code_bs code_dim"]
    ) -> Float[Tensor, "*bs 3"]:
        """The non-rigid offsets at (rigidly moved) positions.

        Args:
            positions: positions after the rigid motion.
            codes: frame codes, broadcastable to the positions' batch shape.

        Returns:
            Offsets to add to the positions.
        """
        normalized = SceneBox.get_normalized_positions(positions, self.aabb).clamp(0.0, 1.0)
        features = self.encoding(normalized.reshape(-1, 3)).to(positions.dtype)
        h = self.position_layer(features).reshape(*positions.shape[:-1], -1)
        h = torch.relu(h + self.code_layer(codes.to(positions.dtype)))
        return self.output_layer(self.hidden(h))

    def forward(
        self, positions: Float[Tensor, "*bs 3"], codes: Float[Tensor, "*code_bs code_dim"]
    ) -> tuple[Float[Tensor, "*bs 3"], Float[Tensor, "*bs 3"]]:
        """Canonical positions p_c = p + D(p, e), and the non-rigid part of D (what regularisers see).

        Args:
            positions: world positions.
            codes: frame codes, broadcastable to the positions' batch shape (e.g. [rays, 1, dim] for
                positions [rays, samples, 3]).
        """
        moved = self.rigid_motion(positions, codes)
        offsets = self.non_rigid_offsets(moved, codes)
        return moved + offsets, offsets

    def canonical_positions(
        self, positions: Float[Tensor, "*bs 3"], codes: Float[Tensor, "*code_bs code_dim"]
    ) -> Float[Tensor, "*bs 3"]:
        """p_c = p + D(p, e)."""
        return self(positions, codes)[0]
