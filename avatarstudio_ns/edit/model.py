"""The edited avatar: the recon model with only its canonical appearance trainable."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from torch import Tensor
from torch.nn import Parameter

from avatarstudio_ns.edit.region import EditRegion
from avatarstudio_ns.recon.model import AvatarReconModel, AvatarReconModelConfig
from avatarstudio_ns.recon.regularizers import opacity_entropy


@dataclass
class AvatarEditModelConfig(AvatarReconModelConfig):
    """The recon's model, edited by text; every recon option keeps its meaning (the weights come from it)."""

    _target: Type = field(default_factory=lambda: AvatarEditModel)
    """target class to instantiate"""
    prompt: str = "photo of a person with blue hair"
    """What the edited avatar should look like (nerfstudio's ``--prompt`` sets it)."""
    trainable: Literal["colour", "colour_grid", "all"] = "colour"
    """What of the canonical appearance A the edit changes. colour (default): the colour MLP and a copy of the
    canonical hash grid that only the colour reads, so the recon's geometry stays exactly as it was; colour_grid:
    that grid alone (local, but the recon's colour MLP cannot reach colours the capture never had, e.g. blue hair);
    all: the whole of A, density included, as in the paper (an edit can then grow fog and shapes around the head)."""
    identity_loss_mult: float = 0.0
    """Weight of the mean squared difference between each keyframe render and its captured image (0: off, as in
    the paper). The guidance's gradient is strong where the prompt asks for a change and weak elsewhere, so a
    small weight holds what the prompt does not mention (skin, eyes) to the capture while the hair still
    changes; too large a weight holds the edit back too."""
    identity_outside_region: bool = True
    """Hold renders to the capture only outside the edit region (weighted by one minus the rendered region), so the
    identity loss never holds back what the prompt asks for, whatever the prompt targets: one weight serves hair,
    skin and whole-head prompts. Off: everywhere (a skin edit then barely moves; docs/edit_settings.md)."""
    consistent_change: bool = False
    """Change each canonical point's colour by one amount at every view and moment: the edited colour is the recon's
    plus the change the edit makes at a reference view and moment (the point seen head-on from outside the head at the
    first frame, where the region's keyframes are). Off: the edited colour MLP sees each sample's view direction and
    frame code as the recon's does, so it can give each keyframe a colour of its own."""
    region_resolution: int = 32
    """Voxels per side of the canonical grid that holds the edit region (``--pipeline.region`` finds it)."""
    keyframe_geometry_cache_mb: float = 1024.0
    """Memory for keeping each keyframe's ray samples between steps (their canonical positions, density features and
    weights). While the geometry is frozen (``trainable`` other than "all") a keyframe's samples never change, so an
    edit step then only evaluates the colour; keyframes beyond this budget are sampled again at each visit, with
    the same result. About 14 MB per 64 x 48 keyframe."""
    entropy_loss_mult: float = 1e-3
    """Weight of the binary entropy of each ray's opacity (METHOD Eq. 9): keeps an edit that changes the geometry
    from fogging the background or thinning the surface (constant when the geometry is kept)."""


def _nbytes(geometry: dict[str, Any]) -> int:
    """Bytes of the tensors in a :meth:`AvatarReconModel.sample_geometry` result."""
    tensors = [v for v in geometry.values() if isinstance(v, Tensor)]
    tensors += [v for v in geometry["outputs"].values() if isinstance(v, Tensor)]
    return sum(v.numel() * v.element_size() for v in tensors)


class AvatarEditModel(AvatarReconModel):
    """The avatar under edit: trains the canonical appearance A only.

    The deformation, the per-frame codes and the proposal networks are frozen (no gradients, no optimiser),
    so the edit is made once in canonical space and the recon's motion carries it to every frame. Unless
    ``trainable`` is "all", the density is frozen too and the colour MLP reads a trainable copy of the canonical
    hash grid, initialised from the recon's.
    """

    config: AvatarEditModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        frozen = [self.deformation, self.frame_codes, self.proposal_networks]
        if self.config.trainable != "all":
            self.appearance.separate_colour_features()
            frozen.append(self.appearance.mlp_base)
        if self.config.trainable == "colour_grid":
            frozen.append(self.appearance.mlp_head)
        # The recon's colour, kept frozen: outside the edit region the edited avatar shows it unchanged.
        self.original_head = copy.deepcopy(self.appearance.mlp_head)
        self.original_base = copy.deepcopy(self.appearance.mlp_base) if self.config.trainable == "all" else None
        frozen += [self.original_head] + ([self.original_base] if self.original_base is not None else [])
        self.edit_region = EditRegion(self.scene_box.aabb, self.config.region_resolution)
        for module in frozen:
            module.requires_grad_(False)
        self._keyframe_geometry: dict[int, dict[str, Any]] = {}
        # The recon's step at which the edit started: the proposals' sampling state is the recon's there (saved with
        # the edit, so ns-eval / ns-render of the edit sample as the edit trained).
        self.register_buffer("recon_step", torch.zeros((), dtype=torch.long))

    def start_from_recon_step(self, step: int) -> None:
        """Records the step of the recon checkpoint the edit starts from and samples as the recon did there."""
        self.recon_step.fill_(int(step))
        self.update_to_step(int(step))

    def update_to_step(self, step: int) -> None:
        """Restores the recon's sampling state at ``recon_step``, whatever the edit's own ``step``.

        The edit never trains the proposal networks, so its steps must not move their weighting: nerfstudio calls
        this with the edit's step on every load, and the recon's schedule at that step (uniform resampling at step
        0) would render other images than the recon's own.
        """
        super().update_to_step(int(self.recon_step))

    def keyframe_outputs(self, ray_bundle: RayBundle, keyframe_index: int) -> dict[str, Any]:
        """Renders a keyframe for an edit step.

        With the geometry frozen, the keyframe's samples are those an evaluation render takes (no stratified
        jitter: the edit trains on the image ns-eval renders) and are kept for the next visit within
        ``keyframe_geometry_cache_mb``; only the colour is evaluated again. The paper's "all" trains the density,
        so every step samples afresh there.
        """
        if self.config.trainable == "all":
            return self(ray_bundle)
        geometry = self._keyframe_geometry.get(keyframe_index)
        if geometry is None or geometry["canonical"].shape[0] != len(ray_bundle):
            geometry = self._fixed_geometry(ray_bundle)
            used = sum(_nbytes(g) for g in self._keyframe_geometry.values())
            if used + _nbytes(geometry) <= self.config.keyframe_geometry_cache_mb * 2**20:
                self._keyframe_geometry[keyframe_index] = geometry
        return self.render_colours(geometry)

    @torch.no_grad()
    def _fixed_geometry(self, ray_bundle: RayBundle) -> dict[str, Any]:
        """The frozen geometry's samples of ``ray_bundle``, taken as in evaluation (no jitter), without what only
        the recon's losses read (the proposals' samples, the deformation offsets)."""
        sampling = self.proposal_sampler.training
        self.proposal_sampler.train(False)
        try:
            # As Model.forward does before get_outputs: the near and far bounds.
            geometry = self.sample_geometry(self.collider(ray_bundle) if self.collider is not None else ray_bundle)
        finally:
            self.proposal_sampler.train(sampling)
        for name in ("weights_list", "ray_samples_list", "offsets"):
            geometry["outputs"].pop(name, None)
        return geometry

    def sample_colours(
        self,
        canonical: Float[Tensor, "*bs num_samples 3"],
        geo_features: Float[Tensor, "*bs num_samples geo_feat_dim"],
        directions: Float[Tensor, "*bs num_samples 3"],
        codes: Float[Tensor, "*bs 1 code_dim"] | None,
    ) -> dict[str, Tensor]:
        """The edited colour inside the edit region, the recon's outside; also the region (``edit_region``)."""
        fitted = bool(self.edit_region.fitted)
        if not fitted and self.training and not self.config.consistent_change:
            return super().sample_colours(canonical, geo_features, directions, codes)
        with torch.no_grad():
            # The recon's colour read geo_features, unless the edit trains the density grid ("all").
            features = geo_features
            if self.original_base is not None:
                features = self.appearance.get_colour_features(canonical, geo_features, grid=self.original_base)
            original = self.appearance.get_canonical_rgb(features, directions, codes, head=self.original_head)
        outputs: dict[str, Tensor] = {}
        region = self.edit_region(canonical) if fitted else None
        if self.config.consistent_change:
            reference_directions, reference_codes = self.reference_view(canonical)
            with torch.no_grad():
                before = self.appearance.get_canonical_rgb(
                    features, reference_directions, reference_codes, head=self.original_head
                )
            colour_features = self.appearance.get_colour_features(canonical, geo_features)
            change = self.appearance.get_canonical_rgb(colour_features, reference_directions, reference_codes) - before
            outputs["rgb"] = (original + (change if region is None else region * change)).clamp(0.0, 1.0)
        else:
            edited = super().sample_colours(canonical, geo_features, directions, codes)["rgb"]
            outputs["rgb"] = edited if region is None else original + region * (edited - original)
        if region is not None:
            outputs["edit_region"] = region
        if not self.training:
            # The recon's appearance as a render output: the viewer's Output type and Split Screen compare it with the
            # edit at any view and moment; ns-render can write it.
            outputs["rgb_original"] = original
        return outputs

    def reference_view(
        self, canonical: Float[Tensor, "*bs num_samples 3"]
    ) -> tuple[Float[Tensor, "*bs num_samples 3"], Float[Tensor, "1 code_dim"] | None]:
        """The view and moment at which :attr:`AvatarEditModelConfig.consistent_change` reads the edit's change: each
        canonical point seen head-on from outside the head (along the line from the scene box's centre through it,
        a direction some camera of a rig round the head sees it from) at the first frame."""
        centre = self.scene_box.aabb.to(canonical).mean(dim=0)
        directions = torch.nn.functional.normalize(centre - canonical, dim=-1)
        if self.appearance.code_dim == 0:
            return directions, None
        return directions, self.frame_codes(torch.zeros(1, 1, device=canonical.device)).detach()

    @torch.no_grad()
    def canonical_surface(self, camera: Cameras) -> tuple[Float[Tensor, "h w 3"], Float[Tensor, "h w"], Tensor]:
        """Where each pixel of ``camera`` sees the head, in canonical space, with the render.

        Returns:
            Canonical positions of the rendered surface (expected depth along each ray, through the fixed
            deformation at the camera's time), the accumulation, and the rendered rgb [h, w, 3].
        """
        # As ns-eval renders, without sample jitter even while the edit trains (the region is fitted in its setup):
        # jittered, the region depended on the trainer's random draws, not only on the prompt and the avatar.
        training = self.training
        self.eval()
        try:
            outputs = self.get_outputs_for_camera(camera)
        finally:
            self.train(training)
        rays = camera.generate_rays(camera_indices=0, keep_shape=True).to(self.device)
        points = rays.origins + rays.directions * outputs["expected_depth"]
        codes = self.frame_codes(self.get_ray_times(rays))
        canonical = self.deform(points.reshape(-1, 1, 3), codes.reshape(-1, codes.shape[-1])).reshape(points.shape)
        return canonical, outputs["accumulation"][..., 0], outputs["rgb"]

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """Only the canonical appearance is optimised (the parts ``trainable`` names): "appearance" (hash grid, and
        the density MLP with "all") and "colour_mlp" (the colour MLP, shared by every point, so it gets its own
        learning rate); a group with nothing to train is left out."""
        head = {id(p) for p in self.appearance.mlp_head.parameters()}
        trainable = [p for p in self.appearance.parameters() if p.requires_grad]
        groups = {
            "appearance": [p for p in trainable if id(p) not in head],
            "colour_mlp": [p for p in trainable if id(p) in head],
        }
        return {name: params for name, params in groups.items() if params}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Loads an edit's state, or a recon's, which lacks what the edit adds: its colour grid starts as the
        geometry's, the frozen copies of the recon's colour as the recon's, the edit region unfitted, and recon_step
        as the trainer recorded it (see start_from_recon_step)."""
        state = dict(state_dict)
        copies = {
            "appearance.colour_base.": ("appearance.mlp_base.", self.appearance.colour_base),
            "original_head.": ("appearance.mlp_head.", self.original_head),
            "original_base.": ("appearance.mlp_base.", self.original_base),
        }
        for prefix, (source, module) in copies.items():
            if module is not None and not any(key.startswith(prefix) for key in state):
                state.update({prefix + k[len(source) :]: v for k, v in state_dict.items() if k.startswith(source)})
        self._keyframe_geometry.clear()
        state.setdefault("recon_step", self.recon_step.clone())
        for key, value in self.edit_region.state_dict().items():
            state.setdefault("edit_region." + key, value.clone())
        result = super().load_state_dict(state, strict=strict, assign=assign)
        # nerfstudio updates to the step before it loads the state: sample as the loaded recon_step says.
        self.update_to_step(int(self.recon_step))
        return result

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """None: the proposal schedule callbacks of the recon only matter while the proposals train."""
        self.apply_cpu_threads()
        return []

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Any], metrics_dict=None) -> Dict[str, Tensor]:
        """Losses of the edit that need no diffusion model: the opacity entropy and, if weighted, the identity (while
        training).

        The score distillation loss is added by the pipeline, which owns the guidance.
        """
        loss_dict = {"opacity_entropy": self.config.entropy_loss_mult * opacity_entropy(outputs["accumulation"])}
        if self.config.identity_loss_mult > 0 and self.training:
            # Training batches are whole keyframes (see KeyframeDataManager); eval batches are nerfstudio's rays.
            error = (outputs["rgb"] - self._gt_rgb(batch)).pow(2)
            if self.config.identity_outside_region and "edit_region" in outputs:
                # Only where the prompt does not act: inside the region the edit is free.
                error = error * (1.0 - outputs["edit_region"].detach())
            loss_dict["identity_loss"] = self.config.identity_loss_mult * error.mean()
        return loss_dict
