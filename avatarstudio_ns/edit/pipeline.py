"""The edit pipelines: render a keyframe, ask a guidance (VT-SDS, or a baseline's) for a loss, train the appearance."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from avatarstudio_ns.data.edit_datamanager import KeyframeDataManagerConfig
from avatarstudio_ns.data.keyframes import (
    Keyframe,
    KeyframeSelectionConfig,
    avatar_keyframes,
    keyframe_background,
    keyframe_foregrounds,
    keyframe_images,
)
from avatarstudio_ns.edit.model import AvatarEditModel, AvatarEditModelConfig
from avatarstudio_ns.edit.region import EditRegionConfig, fit_edit_region, region_keyframes
from avatarstudio_ns.guidance.dataset_update import DatasetUpdateGuidance, DatasetUpdateGuidanceConfig
from avatarstudio_ns.guidance.loading import DiffusionModel, load_diffusion, warn_if_unknown_words
from avatarstudio_ns.guidance.personalization.finetune import PersonalizeConfig, personalize
from avatarstudio_ns.guidance.personalization.personalized_model import load_personalization
from avatarstudio_ns.guidance.vtsds import VTSDSGuidance, VTSDSGuidanceConfig

PERSONALIZATION_CACHE = Path("~/.cache/avatarstudio/personalizations")
"""Where personalisations are kept when ``--pipeline.guidance.personalization_dir`` names no folder."""


@dataclass
class AvatarEditPipelineConfig(VanillaPipelineConfig):
    """Edits a reconstructed avatar with a text prompt by view-and-time-aware score distillation.

    The prompt is the model's (``--prompt``); ``--pipeline.guidance.personalization_dir`` names the folder of an
    ``avatarstudio personalize`` run, reused when its cache key matches this edit's keyframes and settings
    and (re)written otherwise.
    """

    _target: Type = field(default_factory=lambda: AvatarEditPipeline)
    """target class to instantiate"""
    datamanager: KeyframeDataManagerConfig = field(default_factory=KeyframeDataManagerConfig)
    """Yields whole keyframe images."""
    model: AvatarEditModelConfig = field(default_factory=AvatarEditModelConfig)
    """The avatar; its architecture and weights come from the recon given by --load-dir."""
    keyframes: KeyframeSelectionConfig = field(default_factory=KeyframeSelectionConfig)
    """Which (camera, time) pairs the guidance sees (METHOD section 2)."""
    guidance: VTSDSGuidanceConfig = field(default_factory=VTSDSGuidanceConfig)
    """The diffusion guidance: base model, personalisation folder, w, v, K, annealing (METHOD section 4)."""
    personalization: PersonalizeConfig = field(default_factory=PersonalizeConfig)
    """How the diffusion model is personalised on the keyframes when no matching personalisation exists."""
    region: EditRegionConfig = field(default_factory=EditRegionConfig)
    """Where the edit may change the avatar, found by the base model on the keyframes (the rest is kept)."""


class AvatarEditPipeline(VanillaPipeline):
    """nerfstudio's pipeline with a diffusion guidance beside the model.

    The guidance is built at the first training step, after the trainer has loaded the recon's weights
    (keyframes are chosen from its per-frame codes). It is held outside the module tree, so no diffusion
    weight ever enters a nerfstudio checkpoint, and ns-viewer / ns-render / ns-export of an edited avatar
    never load a diffusion model.
    """

    config: AvatarEditPipelineConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A plain attribute holder keeps the guidance out of state_dict() and .to().
        self._guidance_holder: List[Any] = []
        self._total_steps = 1
        self.personalization_reused: Optional[bool] = None
        """Whether the guidance reused a finished personalisation (None until the guidance is built)."""

    def get_guidance(self):
        """The guidance (VT-SDS, or a baseline's), built on first use.

        A method, not a property: nerfstudio's viewer reads every public attribute of the pipeline (looking for its
        controls), which would load the diffusion model just to view an edited avatar.
        """
        if not self._guidance_holder:
            self._guidance_holder.append(self._setup_guidance())
        return self._guidance_holder[0]

    def _setup_guidance(self):
        """Chooses the keyframes from the loaded avatar, loads the base model and builds the guidance."""
        datamanager = self.datamanager
        keyframes = avatar_keyframes(
            self.model.get_frame_embeddings(),
            datamanager.train_dataset,
            datamanager.eval_dataset,
            self.config.keyframes,
        )
        datamanager.set_keyframes(keyframes)
        CONSOLE.print(
            f"Editing with {len(keyframes)} keyframes: "
            + ", ".join(f"camera {k.camera_index} @ frame {k.timestep_index}" for k in keyframes)
        )
        config = dataclasses.replace(self.config.guidance, prompt=self.model.config.prompt)
        dtype = None if config.dtype == "auto" else config.dtype
        base = load_diffusion(config.base_model, self.device, dtype=dtype, vae_fp32=config.vae_fp32)
        warn_if_unknown_words(base, config.prompt)
        if self.config.region.enabled and not bool(self.model.edit_region.fitted):
            # Before the guidance is built: it may release the text encoder the region's prompts need.
            cameras = [datamanager.keyframe_camera(i) for i in region_keyframes(keyframes, self.config.region)]
            stats = fit_edit_region(self.model, cameras, base, config.prompt, self.config.region)
            CONSOLE.print(
                f"Edit region: {stats['region_fraction']:.0%} of the head's pixels in {len(cameras)} keyframes may "
                f"change (where {config.prompt!r} differs from {self.config.region.reference_prompt!r})."
            )
        return self._make_guidance(config, base, keyframes)

    def _make_guidance(self, config: VTSDSGuidanceConfig, base: DiffusionModel, keyframes: List[Keyframe]):
        """VT-SDS with the personalisation of these keyframes (reused when one matches, trained otherwise)."""
        personalized = None
        if config.use_personalized:
            datamanager = self.datamanager
            folder = config.personalization_dir or default_personalization_folder(
                datamanager.config.dataparser.data, config.base_model, self.config.personalization
            )
            dataset = datamanager.train_dataset
            images = keyframe_images(dataset, keyframes)
            # Framed on the capture's masks, as the renders are on their accumulation (see get_train_loss_dict).
            foregrounds, background = keyframe_foregrounds(dataset, keyframes), keyframe_background(dataset)
            with torch.enable_grad():
                result = personalize(
                    keyframes,
                    images,
                    base,
                    self.config.personalization,
                    folder,
                    foregrounds=foregrounds,
                    background=background,
                )
            self.personalization_reused = result.reused
            CONSOLE.print(
                ("Reusing" if result.reused else "Wrote") + f" the personalised diffusion model in {result.folder}"
            )
            personalized = load_personalization(result.folder, base)
        return VTSDSGuidance(config, device=self.device, base=base, personalized=personalized)

    def guidance_state(self) -> Optional[Dict[str, Any]]:
        """The guidance's own training state for the edit's checkpoint, or None (a guidance without one, such as
        VT-SDS, or none built yet)."""
        if not self._guidance_holder or not hasattr(self._guidance_holder[0], "resume_state"):
            return None
        return self._guidance_holder[0].resume_state()

    def load_guidance_state(self, state: Dict[str, Any]) -> None:
        """Gives the guidance the state a checkpoint kept (see :meth:`guidance_state`)."""
        self.get_guidance().load_resume_state(state)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """The model's callbacks; also records the run length, which the timestep annealing follows."""
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            # A resumed run continues from its start step (nerfstudio runs max_num_iterations more).
            self._total_steps = int(getattr(trainer, "_start_step", 0) + trainer.config.max_num_iterations)
        return super().get_training_callbacks(training_callback_attributes)

    def get_train_loss_dict(self, step: int):
        """Renders the next keyframe whole and returns the guidance's losses and the model's (entropy, identity)."""
        guidance = self.get_guidance()
        ray_bundle, batch = self.datamanager.next_train(step)
        return keyframe_losses(self._model, guidance, ray_bundle, batch, step, self._total_steps)


def keyframe_losses(
    model: AvatarEditModel, guidance, ray_bundle: RayBundle, batch: Dict[str, Any], step: int, total_steps: int
) -> Tuple[Dict[str, Any], Dict[str, Tensor], Dict[str, Any]]:
    """One edit step's outputs, losses and diagnostics: ``model`` renders a whole keyframe image from ``ray_bundle``
    and ``guidance`` scores it; the model adds its own losses (entropy, identity).

    Args:
        model: The edit model.
        guidance: VT-SDS, or a baseline's guidance.
        ray_bundle: Every ray of the keyframe image, flattened row by row.
        batch: The keyframe's ``keyframe_index``, ``image_height``, ``image_width`` and captured ``image``.
        step: The training step (the timestep annealing follows it).
        total_steps: The run's length.
    """
    outputs = model.keyframe_outputs(ray_bundle, batch["keyframe_index"])
    height, width = batch["image_height"], batch["image_width"]
    image = outputs["rgb"].reshape(height, width, 3).permute(2, 0, 1)[None]
    # The accumulation frames the square the diffusion model sees on the head (the whole head, whatever the
    # image's aspect), padded with the backdrop the render is composited on.
    result = guidance(
        image,
        keyframe_ids=[batch["keyframe_index"]],
        step=step,
        total_steps=total_steps,
        foreground=outputs["accumulation"].reshape(1, height, width),
        background=model.background_color,
    )
    loss_dict = model.get_loss_dict(outputs, batch)
    # The guidance names its losses "loss_*" (VT-SDS: loss_vtsds); the rest are diagnostics.
    loss_dict.update({key[5:]: value for key, value in result.items() if key.startswith("loss_")})
    metrics_dict: Dict[str, Any] = {
        key: value.float().mean() for key, value in result.items() if not key.startswith("loss_")
    }
    return outputs, loss_dict, metrics_dict


def default_personalization_folder(data: Optional[Path], base_model: str, config: PersonalizeConfig) -> Path:
    """A per-capture, per-base-model, per-mode folder in the personalisation cache.

    Different keyframes or settings for the same capture land in the same folder and retrain it: the
    folder's cache key decides whether a finished personalisation can be reused.
    """
    name = f"{Path(data or '.').expanduser().resolve()}|{base_model}|{config.mode}"
    return PERSONALIZATION_CACHE.expanduser() / hashlib.sha1(name.encode()).hexdigest()[:16]


@dataclass
class DatasetUpdatePipelineConfig(AvatarEditPipelineConfig):
    """The "edit the images in 2D, then fit" baseline (Instruct-NeRF2NeRF family) on the same keyframes, model and
    trainable appearance as the VT-SDS edit; no personalisation."""

    _target: Type = field(default_factory=lambda: DatasetUpdatePipeline)
    """target class to instantiate"""
    guidance: DatasetUpdateGuidanceConfig = field(default_factory=DatasetUpdateGuidanceConfig)  # type: ignore[assignment]
    """SDEdit image edits with the base model and the iterative dataset update."""


class DatasetUpdatePipeline(AvatarEditPipeline):
    """Fits the keyframe renders to SDEdit-ed targets that are refreshed as the edit goes."""

    config: DatasetUpdatePipelineConfig

    def _make_guidance(self, config, base: DiffusionModel, keyframes: List[Keyframe]) -> DatasetUpdateGuidance:
        """The baseline's guidance, its first targets the captured keyframe images."""
        images = keyframe_images(self.datamanager.train_dataset, keyframes)
        return DatasetUpdateGuidance(config, images, device=self.device, base=base)
