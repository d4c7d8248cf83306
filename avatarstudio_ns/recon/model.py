"""The dynamic head NeRF: per-frame codes, deformation into canonical space, canonical appearance.

A world sample p on a ray at time t gets the frame code e(t), moves to p_c = p + D(p, e(t)), and the
canonical field A gives (rgb, sigma) at p_c seen from the ray's direction. The proposal density
networks are queried at the same deformed positions, so the sampler follows the moving head.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.model_components.shaders import NormalsShader
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.external import TCNN_EXISTS
from torch import Tensor
from torch.nn import Parameter

from avatarstudio_ns.recon import image_metrics
from avatarstudio_ns.recon.deformation import DeformationField
from avatarstudio_ns.recon.field import CanonicalAppearanceField
from avatarstudio_ns.recon.frame_codes import FrameCodes
from avatarstudio_ns.recon.viewer_camera import FrontalViewerCamera
from avatarstudio_ns.threads import set_torch_threads


def resolve_implementation(implementation: Literal["auto", "tcnn", "torch"]) -> Literal["tcnn", "torch"]:
    """ "auto" picks tiny-cuda-nn when it is importable and a GPU is present, torch otherwise."""
    if implementation == "auto":
        return "tcnn" if TCNN_EXISTS and torch.cuda.is_available() else "torch"
    return implementation


@dataclass
class AvatarReconModelConfig(ModelConfig):
    """Configuration of the dynamic head NeRF (deformation + canonical appearance)."""

    _target: type = field(default_factory=lambda: AvatarReconModel)
    """target class to instantiate"""
    enable_collider: bool = False
    """Unused: the model always clips rays to the scene box (the head fits in it)."""
    near_plane: float = 0.05
    """Closest distance from the camera to sample during training."""
    background_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Backdrop colour, used when the dataparser's metadata gives none."""
    default_time: float = 0.0
    """Time in [0, 1] used for rays that carry none (some ns-export / ns-render paths)."""
    num_timesteps: int = 0
    """Number of captured frames; 0 takes it from the dataparser metadata (1 if absent there too)."""
    code_dim: int = 32
    """Dimension of the per-frame codes e_j."""
    code_init_std: float = 0.1
    """Standard deviation of the initial per-frame codes."""
    appearance_sees_code: bool = True
    """Whether the colour MLP sees e_j (expression-dependent shading, e.g. wrinkles, mouth interior)."""
    deformation_encoding: Literal["grid", "hash"] = "grid"
    """Position features of the deformation: dense grids (cheap everywhere) or a hash grid."""
    deformation_grid_resolutions: tuple[int, ...] = (16, 32, 64)
    """Resolutions of the deformation's dense grids."""
    deformation_hash_num_levels: int = 4
    """Levels of the deformation's hash grid (hash encoding only)."""
    deformation_hash_max_res: int = 64
    """Finest resolution of the deformation's hash grid (hash encoding only)."""
    deformation_features_per_level: int = 4
    """Features per level of the deformation's grids."""
    deformation_hidden_dim: int = 32
    """Width of the deformation MLP."""
    deformation_num_hidden_layers: int = 1
    """Hidden layers of the deformation MLP."""
    deformation_rigid: bool = True
    """A rigid motion per frame (rotation about the box centre + translation, from the frame code) before the
    non-rigid offsets. Without it, head turns must be an offset field, which a small MLP smears: on the
    synthetic capture (turns of 25 degrees) the face lost its eyes and lips. Turn off for captures whose cameras
    already follow the head (tracked head poses)."""
    num_levels: int = 16
    """Levels of the canonical hash grid."""
    base_res: int = 16
    """Coarsest resolution of the canonical hash grid."""
    max_res: int = 2048
    """Finest resolution of the canonical hash grid."""
    log2_hashmap_size: int = 19
    """log2 of the canonical hash table size per level."""
    features_per_level: int = 2
    """Features per level of the canonical hash grid."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    hidden_dim_color: int = 64
    """Width of the colour MLP."""
    num_layers_color: int = 3
    """Layers of the colour MLP."""
    average_init_density: float = 1.0
    """Scale of the initial density. Not nerfacto's 0.01: with a fixed white backdrop an almost empty start
    renders white, the colour MLP is driven dark everywhere until its sigmoid saturates, and the model then
    fakes a grey head with partial transparency (seen on the synthetic head: train PSNR stuck at 20 dB)."""
    num_proposal_samples_per_ray: tuple[int, ...] = (128, 64)
    """Samples per ray for each proposal network."""
    num_nerf_samples_per_ray: int = 48
    """Samples per ray for the appearance field."""
    num_proposal_iterations: int = 2
    """Number of proposal network iterations."""
    proposal_update_every: int = 5
    """Update the proposal networks every n steps after the warmup."""
    proposal_warmup: int = 5000
    """Ramps the proposal update interval from 1 to proposal_update_every over this many steps."""
    proposal_net_args_list: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 128, "use_linear": False},
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 256, "use_linear": False},
        ]
    )
    """Arguments of the proposal density fields (HashMLPDensityField)."""
    use_proposal_weight_anneal: bool = True
    """Anneal the proposal weights before PDF sampling (mip-NeRF 360, eq. 18)."""
    proposal_weights_anneal_slope: float = 10.0
    """Slope of the annealing function."""
    proposal_weights_anneal_max_num_iters: int = 1000
    """Iterations over which the annealing runs."""
    use_single_jitter: bool = True
    """Use one jitter per ray in the samplers."""
    photometric_loss: Literal["l2", "huber"] = "l2"
    """Photometric loss on rgb."""
    huber_delta: float = 0.1
    """Delta of the Huber loss."""
    mask_loss_mult: float = 0.1
    """Weight of the foreground-mask loss on accumulation (batches with fg_mask only)."""
    interlevel_loss_mult: float = 1.0
    """Proposal (interlevel) loss multiplier."""
    distortion_loss_mult: float = 0.002
    """Distortion loss multiplier."""
    deformation_loss_mult: float = 0.01
    """Weight of the mean squared non-rigid deformation offset (prefers the least-motion canonical space; the
    rigid head motion is free)."""
    eval_normals: bool = True
    """Render normals (density gradient through the deformation) outside training; ns-export uses them."""
    implementation: Literal["auto", "tcnn", "torch"] = "auto"
    """Hash grid / MLP implementation; auto picks tcnn when importable on a GPU."""
    num_cpu_threads: int = 0
    """torch CPU threads while training on the CPU (at most the machine's cores); 0 keeps torch's default. The
    torch hash grid is many small memory-bound ops: a second thread made a step 1.34x faster on an idle 2-core
    machine, but OpenMP threads waiting on each other made training up to 7x slower when other jobs shared the
    cores (use 1 there)."""


class AvatarReconModel(Model):
    """Dynamic head NeRF of AvatarStudio (METHOD.md section 1).

    Attributes the edit stage relies on: ``frame_codes`` (:class:`FrameCodes`), ``deformation``
    (:class:`DeformationField`), ``appearance`` (:class:`CanonicalAppearanceField`) and
    ``proposal_networks``; nothing in ``appearance`` feeds the deformation or the proposals.

    Args:
        config: model configuration.
    """

    config: AvatarReconModelConfig

    def populate_modules(self) -> None:
        """Builds the codes, the deformation, the canonical field, the proposal networks and renderers."""
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        implementation = resolve_implementation(self.config.implementation)
        aabb = self.scene_box.aabb

        num_timesteps = self.config.num_timesteps or int(metadata.get("num_timesteps", 1) or 1)
        # The viewer opens at the frontal camera instead of viser's default, which sits inside the head.
        self.viewer_camera = FrontalViewerCamera()
        trained = metadata.get("timestep_indices")
        self.frame_codes = FrameCodes(
            num_timesteps,
            self.config.code_dim,
            init_std=self.config.code_init_std,
            trained_frames=None if trained is None else [int(i) for i in trained],
        )
        self.deformation = DeformationField(
            aabb,
            code_dim=self.config.code_dim,
            encoding=self.config.deformation_encoding,
            grid_resolutions=self.config.deformation_grid_resolutions,
            hash_num_levels=self.config.deformation_hash_num_levels,
            hash_max_res=self.config.deformation_hash_max_res,
            features_per_level=self.config.deformation_features_per_level,
            hidden_dim=self.config.deformation_hidden_dim,
            num_hidden_layers=self.config.deformation_num_hidden_layers,
            rigid=self.config.deformation_rigid,
            implementation=implementation,
        )
        self.appearance = CanonicalAppearanceField(
            aabb,
            code_dim=self.config.code_dim if self.config.appearance_sees_code else 0,
            num_levels=self.config.num_levels,
            base_res=self.config.base_res,
            max_res=self.config.max_res,
            log2_hashmap_size=self.config.log2_hashmap_size,
            features_per_level=self.config.features_per_level,
            hidden_dim=self.config.hidden_dim,
            geo_feat_dim=self.config.geo_feat_dim,
            num_layers_color=self.config.num_layers_color,
            hidden_dim_color=self.config.hidden_dim_color,
            average_init_density=self.config.average_init_density,
            implementation=implementation,
        )

        self.proposal_networks = torch.nn.ModuleList()
        for i in range(self.config.num_proposal_iterations):
            args = self.config.proposal_net_args_list[min(i, len(self.config.proposal_net_args_list) - 1)]
            self.proposal_networks.append(
                HashMLPDensityField(
                    aabb,
                    spatial_distortion=None,
                    **args,
                    average_init_density=self.config.average_init_density,
                    implementation=implementation,
                )
            )

        def update_schedule(step: int) -> float:
            return float(
                np.clip(
                    np.interp(step, [0, self.config.proposal_warmup], [0, self.config.proposal_update_every]),
                    1,
                    self.config.proposal_update_every,
                )
            )

        # The head lives in a bounded box: uniform initial samples inside it, no scene contraction.
        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=self.config.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=self.config.num_proposal_samples_per_ray,
            num_proposal_network_iterations=self.config.num_proposal_iterations,
            single_jitter=self.config.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=UniformSampler(single_jitter=self.config.use_single_jitter),
        )
        self.collider = AABBBoxCollider(self.scene_box, near_plane=self.config.near_plane)

        background = metadata.get("background_color")
        if background is None:
            background = self.config.background_color
        self.background_color = torch.as_tensor(background, dtype=torch.float32).reshape(3).clone()
        self.renderer_rgb = RGBRenderer(background_color=self.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.renderer_expected_depth = DepthRenderer(method="expected")
        self.normals_shader = NormalsShader()

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        """The four groups; the edit stage optimises (parts of) "appearance" only."""
        return {
            "deformation": list(self.deformation.parameters()),
            "frame_codes": list(self.frame_codes.parameters()),
            "appearance": list(self.appearance.parameters()),
            "proposal_networks": list(self.proposal_networks.parameters()),
        }

    def apply_cpu_threads(self) -> None:
        """Sets torch's CPU thread count from the config (the trainer asks for callbacks once, on its device)."""
        if self.device.type == "cpu":
            set_torch_threads(self.config.num_cpu_threads)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        """Proposal weight annealing and the proposal update schedule, as in nerfacto."""
        self.apply_cpu_threads()
        callbacks = []
        if self.config.use_proposal_weight_anneal:
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=self._set_proposal_anneal,
                )
            )
        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self.proposal_sampler.step_cb,
            )
        )
        return callbacks

    def _set_proposal_anneal(self, step: int) -> None:
        """Sharpens the proposal weights over the first iterations (mip-NeRF 360, eq. 18)."""
        if not self.config.use_proposal_weight_anneal:
            return
        slope = self.config.proposal_weights_anneal_slope
        frac = min(max(step / self.config.proposal_weights_anneal_max_num_iters, 0.0), 1.0)
        self.proposal_sampler.set_anneal(slope * frac / ((slope - 1.0) * frac + 1.0))

    def update_to_step(self, step: int) -> None:
        """Restores the step-dependent sampling state, so a reloaded checkpoint renders as it did in training."""
        self._set_proposal_anneal(step)
        self.proposal_sampler.step_cb(step)

    # ----------------------------------------------------------------------------------------------
    # Time, codes and deformation

    def get_ray_times(self, ray_bundle: RayBundle) -> Float[Tensor, "*bs 1"]:
        """The rays' times, or ``default_time`` where the bundle carries none."""
        if ray_bundle.times is not None:
            return ray_bundle.times.to(ray_bundle.origins.dtype)
        return torch.full_like(ray_bundle.origins[..., :1], float(self.config.default_time))

    def get_frame_embeddings(self) -> Float[Tensor, "num_timesteps code_dim"]:
        """The per-frame codes e_j (detached), e.g. for keyframe selection."""
        return self.frame_codes.codes_at_frames()

    def deform(
        self, positions: Float[Tensor, "*bs num_samples 3"], codes: Float[Tensor, "*bs code_dim"]
    ) -> Float[Tensor, "*bs num_samples 3"]:
        """Canonical positions p_c = p + D(p, e) of samples along rays with per-ray codes."""
        return self.deformation.canonical_positions(positions, codes.unsqueeze(-2))

    def _deformed_density(
        self, density_fn: Callable[[Tensor], Tensor], codes: Tensor, positions: Tensor
    ) -> Float[Tensor, "*bs num_samples 1"]:
        """A proposal density queried at deformed positions.

        The deformation runs without gradient here: the proposals follow the motion learnt from the
        photometric loss; the interlevel loss must not bend the motion to fit the proposals.
        """
        with torch.no_grad():
            canonical = self.deform(positions, codes)
        return density_fn(canonical)

    # ----------------------------------------------------------------------------------------------
    # Rendering

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Any]:
        """Renders rgb, accumulation, depth (and normals outside training) for a flat bundle of rays."""
        return self.render_colours(self.sample_geometry(ray_bundle))

    def sample_geometry(self, ray_bundle: RayBundle) -> dict[str, Any]:
        """Everything of a render that the canonical appearance's colour does not change: the samples along each
        ray (through the proposals), their canonical positions, density features and weights, and the outputs made
        from the weights alone (accumulation, depths, normals). :meth:`render_colours` finishes the render."""
        codes = self.frame_codes(self.get_ray_times(ray_bundle))
        # nerfstudio's sampler calls density_fn(positions) without times: bind this bundle's codes.
        density_fns = [
            functools.partial(self._deformed_density, network.density_fn, codes.detach())
            for network in self.proposal_networks
        ]
        ray_samples: RaySamples
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=density_fns)

        # Normals outside training only (viewer, ns-render, ns-export, which probes for them with gradients on).
        compute_normals = self.config.eval_normals and not self.training
        with torch.enable_grad() if compute_normals else contextlib.nullcontext():
            positions = ray_samples.frustums.get_positions()
            if compute_normals:
                positions = positions.detach().requires_grad_(True)
            canonical, offsets = self.deformation(positions, codes.unsqueeze(-2))
            density, geo_features = self.appearance.get_canonical_density(canonical)
            if compute_normals:
                gradient = torch.autograd.grad(
                    self.appearance._density_before_activation,
                    positions,
                    grad_outputs=torch.ones_like(self.appearance._density_before_activation),
                )[0]
                density, geo_features = density.detach(), geo_features.detach()
        weights = ray_samples.get_weights(density)
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)
        with torch.no_grad():
            depth = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        outputs: dict[str, Any] = {
            "accumulation": self.renderer_accumulation(weights=weights),
            "depth": depth,
            "expected_depth": self.renderer_expected_depth(weights=weights, ray_samples=ray_samples),
        }
        if compute_normals:
            normals = -torch.nn.functional.normalize(gradient, dim=-1)
            rendered = torch.sum(weights.detach() * normals, dim=-2)
            outputs["normals"] = self.normals_shader(torch.nn.functional.normalize(rendered, dim=-1))
        if self.training:
            outputs["weights_list"] = weights_list
            outputs["ray_samples_list"] = ray_samples_list
            outputs["offsets"] = offsets
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        return {
            "canonical": canonical,
            "geo_features": geo_features,
            "directions": ray_samples.frustums.directions,
            "appearance_codes": codes.unsqueeze(-2) if self.config.appearance_sees_code else None,
            "weights": weights,
            "outputs": outputs,
        }

    def render_colours(self, geometry: dict[str, Any]) -> dict[str, Any]:
        """The render's outputs: those of :meth:`sample_geometry` with the colours of its samples composited."""
        sample_outputs = self.sample_colours(
            geometry["canonical"], geometry["geo_features"], geometry["directions"], geometry["appearance_codes"]
        )
        weights = geometry["weights"]
        outputs = {"rgb": self.renderer_rgb(rgb=sample_outputs.pop("rgb"), weights=weights), **geometry["outputs"]}
        # Further per-sample quantities: colours ("rgb_...", e.g. the edit's original appearance) are rendered like rgb,
        # anything else (e.g. the edit's region) like the accumulation.
        for name, value in sample_outputs.items():
            if name.startswith("rgb"):
                outputs[name] = self.renderer_rgb(rgb=value, weights=weights)
            else:
                outputs[name] = torch.sum(weights * value, dim=-2)
        return outputs

    def sample_colours(
        self,
        canonical: Float[Tensor, "*bs num_samples 3"],
        geo_features: Float[Tensor, "*bs num_samples geo_feat_dim"],
        directions: Float[Tensor, "*bs num_samples 3"],
        codes: Float[Tensor, "*bs 1 code_dim"] | None,
    ) -> dict[str, Tensor]:
        """Colour of each sample (``rgb``) from the canonical appearance; subclasses may add per-sample values
        ([..., 1]) that are rendered along each ray under their own names."""
        colour_features = self.appearance.get_colour_features(canonical, geo_features)
        return {"rgb": self.appearance.get_canonical_rgb(colour_features, directions, codes)}

    # ----------------------------------------------------------------------------------------------
    # Losses and metrics

    def _gt_rgb(self, batch: dict[str, Any]) -> Tensor:
        """Ground-truth colours over the backdrop (RGBA images are composited on it)."""
        return self.renderer_rgb.blend_background(batch["image"].to(self.device))

    def get_metrics_dict(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Training PSNR and, while training, the distortion value."""
        metrics_dict = {"psnr": image_metrics.psnr(outputs["rgb"], self._gt_rgb(batch))}
        if self.training:
            metrics_dict["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics_dict

    def get_loss_dict(
        self, outputs: dict[str, Any], batch: dict[str, Any], metrics_dict: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Photometric, mask, interlevel, distortion and deformation losses."""
        loss_dict: dict[str, Tensor] = {}
        pred_rgb, gt_rgb = outputs["rgb"], self._gt_rgb(batch)
        if self.config.photometric_loss == "huber":
            loss_dict["rgb_loss"] = torch.nn.functional.huber_loss(pred_rgb, gt_rgb, delta=self.config.huber_delta)
        else:
            loss_dict["rgb_loss"] = torch.nn.functional.mse_loss(pred_rgb, gt_rgb)
        if "fg_mask" in batch and self.config.mask_loss_mult > 0:
            mask = batch["fg_mask"].to(self.device)
            mask = mask.float() / 255.0 if mask.dtype == torch.uint8 else mask.float()
            accumulation = outputs["accumulation"].clamp(0.0, 1.0)
            loss_dict["mask_loss"] = self.config.mask_loss_mult * torch.nn.functional.mse_loss(
                accumulation, mask.reshape(accumulation.shape)
            )
        if self.training:
            loss_dict["interlevel_loss"] = self.config.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"]
            )
            assert metrics_dict is not None and "distortion" in metrics_dict
            loss_dict["distortion_loss"] = self.config.distortion_loss_mult * metrics_dict["distortion"]
            if self.config.deformation_loss_mult > 0:
                loss_dict["deformation_loss"] = self.config.deformation_loss_mult * outputs["offsets"].pow(2).mean()
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        """PSNR and SSIM of a rendered image (LPIPS too when its weights are on disk), and previews."""
        gt_rgb = self._gt_rgb(batch)
        predicted_rgb = outputs["rgb"]
        gt = torch.moveaxis(gt_rgb, -1, 0)[None]
        pred = torch.moveaxis(predicted_rgb, -1, 0)[None].clamp(0.0, 1.0)
        metrics_dict = {
            "psnr": float(image_metrics.psnr(pred, gt).item()),
            "ssim": float(image_metrics.ssim(pred, gt).item()),
        }
        lpips = image_metrics.lpips_if_available(self.device)
        if lpips is not None:
            metrics_dict["lpips"] = float(lpips(pred, gt).item())

        images_dict = {
            "img": torch.cat([gt_rgb, predicted_rgb], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        if "fg_mask" in batch:
            mask = batch["fg_mask"].to(self.device).float()
            mask = mask / 255.0 if mask.max() > 1.0 else mask
            predicted_fg, true_fg = outputs["accumulation"] > 0.5, mask > 0.5
            union = (predicted_fg | true_fg).sum().clamp_min(1)
            metrics_dict["mask_iou"] = float((predicted_fg & true_fg).sum() / union)
        return metrics_dict, images_dict
