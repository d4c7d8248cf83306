"""The canonical appearance field A(p_c, d, e_j) -> (rgb, sigma) (METHOD.md section 1)."""

from __future__ import annotations

import copy
from typing import Literal

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import SHEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLP, MLPWithHashEncoding
from nerfstudio.fields.base_field import Field, get_normalized_directions
from torch import Tensor, nn


class CanonicalAppearanceField(Field):
    """Multi-resolution hash grid on canonical positions, a density MLP and a colour MLP.

    The colour MLP sees the geometry features, the (spherical-harmonics encoded) view direction and
    the frame code e_j. Nothing here feeds the deformation, so the edit stage can optimise this
    module alone while the motion stays fixed.

    Args:
        aabb: scene box [2, 3]; canonical positions outside it have zero density.
        code_dim: dimension of the frame codes the colour MLP sees (0: none).
        num_levels: hash grid levels.
        base_res: coarsest hash grid resolution.
        max_res: finest hash grid resolution.
        log2_hashmap_size: log2 of the hash table size per level.
        features_per_level: features per hash level.
        num_layers: layers of the density MLP.
        hidden_dim: width of the density MLP.
        geo_feat_dim: geometry features passed from the density MLP to the colour MLP.
        num_layers_color: layers of the colour MLP.
        hidden_dim_color: width of the colour MLP.
        average_init_density: scale of the density at initialisation.
        implementation: "tcnn" or "torch".
    """

    aabb: Tensor

    def __init__(
        self,
        aabb: Tensor,
        code_dim: int,
        num_levels: int = 16,
        base_res: int = 16,
        max_res: int = 2048,
        log2_hashmap_size: int = 19,
        features_per_level: int = 2,
        num_layers: int = 2,
        hidden_dim: int = 64,
        geo_feat_dim: int = 15,
        num_layers_color: int = 3,
        hidden_dim_color: int = 64,
        average_init_density: float = 1.0,
        implementation: Literal["tcnn", "torch"] = "torch",
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone())
        self.code_dim = code_dim
        self.geo_feat_dim = geo_feat_dim
        self.average_init_density = average_init_density
        self.direction_encoding = SHEncoding(levels=4, implementation=implementation)
        self.mlp_base = MLPWithHashEncoding(
            num_levels=num_levels,
            min_res=base_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            num_layers=num_layers,
            layer_width=hidden_dim,
            out_dim=1 + geo_feat_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation=implementation,
        )
        self.mlp_head = MLP(
            in_dim=self.direction_encoding.get_out_dim() + geo_feat_dim + code_dim,
            num_layers=num_layers_color,
            layer_width=hidden_dim_color,
            out_dim=3,
            activation=nn.ReLU(),
            out_activation=nn.Sigmoid(),
            implementation=implementation,
        )
        self.colour_base: MLPWithHashEncoding | None = None
        """The colour's own hash grid and MLP, when :meth:`separate_colour_features` has been called."""

    def separate_colour_features(self) -> None:
        """Gives the colour MLP its own copy of the hash grid and base MLP, so colour can change alone.

        The copy starts equal to the geometry's (same outputs), after which training it changes what the colour
        MLP sees and never the density. The edit uses this to keep the recon's geometry.
        """
        if self.colour_base is None:
            self.colour_base = copy.deepcopy(self.mlp_base)

    def _grid_inputs(
        self, canonical_positions: Float[Tensor, "*bs 3"]
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "*bs"]]:
        """Hash grid inputs (flat, in [0, 1]) and which positions lie inside the box.

        Points deformed out of the box are empty; the hash grid also needs inputs in [0, 1], so they are moved to
        the box's corner.
        """
        positions = SceneBox.get_normalized_positions(canonical_positions, self.aabb)
        selector = ((positions > 0.0) & (positions < 1.0)).all(dim=-1)
        return (positions * selector[..., None]).reshape(-1, 3), selector

    def get_colour_features(
        self,
        canonical_positions: Float[Tensor, "*bs 3"],
        geo_features: Float[Tensor, "*bs geo_feat_dim"],
        grid: MLPWithHashEncoding | None = None,
    ) -> Float[Tensor, "*bs geo_feat_dim"]:
        """What the colour MLP sees: the geometry features, or those of the separate colour grid if there is one.

        Args:
            canonical_positions: positions in the canonical space, world units.
            geo_features: features from :meth:`get_canonical_density` at the same positions.
            grid: a grid to read the features from instead (e.g. a frozen copy of the recon's).
        """
        grid = self.colour_base if grid is None else grid
        if grid is None:
            return geo_features
        positions, _ = self._grid_inputs(canonical_positions)
        h = grid(positions).reshape(*canonical_positions.shape[:-1], -1)
        return h[..., 1:]

    def get_canonical_density(
        self, canonical_positions: Float[Tensor, "*bs 3"]
    ) -> tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs geo_feat_dim"]]:
        """Density and geometry features at canonical positions.

        Args:
            canonical_positions: positions in the canonical space, world units.
        """
        positions, selector = self._grid_inputs(canonical_positions)
        h = self.mlp_base(positions).reshape(*canonical_positions.shape[:-1], -1)
        density_before_activation, geo_features = torch.split(h, [1, self.geo_feat_dim], dim=-1)
        self._density_before_activation = density_before_activation
        # exp keeps high densities reachable from small (possibly half precision) MLP outputs.
        density = self.average_init_density * trunc_exp(density_before_activation.to(canonical_positions))
        density = density * selector[..., None]
        return density, geo_features

    def get_canonical_rgb(
        self,
        geo_features: Float[Tensor, "*bs geo_feat_dim"],
        directions: Float[Tensor, "*bs 3"],
        codes: Float[Tensor, "*bs code_dim"] | None,
        head: nn.Module | None = None,
    ) -> Float[Tensor, "*bs 3"]:
        """Colour from geometry features, unit view directions and frame codes.

        Args:
            geo_features: features from :meth:`get_canonical_density`.
            directions: unit viewing directions (world space).
            codes: frame codes, broadcastable to the batch shape.
            head: the colour MLP to use instead of ``mlp_head`` (e.g. a frozen copy of the recon's).
        """
        batch_shape = directions.shape[:-1]
        d = self.direction_encoding(get_normalized_directions(directions).reshape(-1, 3))
        inputs = [d, geo_features.reshape(-1, self.geo_feat_dim).to(d)]
        if self.code_dim > 0:
            assert codes is not None, "this field was built with frame codes; pass them"
            inputs.append(codes.expand(*batch_shape, self.code_dim).reshape(-1, self.code_dim).to(d))
        head = self.mlp_head if head is None else head
        return head(torch.cat(inputs, dim=-1)).reshape(*batch_shape, 3).to(directions)

    def query(
        self,
        canonical_positions: Float[Tensor, "*bs 3"],
        directions: Float[Tensor, "*bs 3"],
        codes: Float[Tensor, "*bs code_dim"] | None,
    ) -> dict[FieldHeadNames, Tensor]:
        """Density and colour at canonical positions seen along directions at frames with codes."""
        density, geo_features = self.get_canonical_density(canonical_positions)
        colour_features = self.get_colour_features(canonical_positions, geo_features)
        rgb = self.get_canonical_rgb(colour_features, directions, codes)
        return {FieldHeadNames.DENSITY: density, FieldHeadNames.RGB: rgb}

    # nerfstudio's Field interface, for tools that query the canonical field directly: the sample positions
    # are taken as canonical positions, and the colour MLP gets an all-zero frame code.
    def get_density(self, ray_samples: RaySamples) -> tuple[Tensor, Tensor]:
        return self.get_canonical_density(ray_samples.frustums.get_positions())

    def get_outputs(
        self, ray_samples: RaySamples, density_embedding: Tensor | None = None
    ) -> dict[FieldHeadNames, Tensor]:
        assert density_embedding is not None
        directions = ray_samples.frustums.directions
        codes = None
        if self.code_dim > 0:
            codes = torch.zeros(*directions.shape[:-1], self.code_dim, device=directions.device)
        features = self.get_colour_features(ray_samples.frustums.get_positions(), density_embedding)
        return {FieldHeadNames.RGB: self.get_canonical_rgb(features, directions, codes)}
