"""The edit pipeline: renders a keyframe, asks the VT-SDS guidance for a loss, trains the appearance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from avatarstudio_ns.data.edit_datamanager import KeyframeDataManagerConfig
from avatarstudio_ns.data.keyframes import KeyframeSelectionConfig, select_keyframes
from avatarstudio_ns.edit.model import AvatarEditModelConfig
from avatarstudio_ns.guidance.personalize import PersonalizationConfig, personalize
from avatarstudio_ns.guidance.vtsds import VTSDSGuidanceConfig


@dataclass
class AvatarEditPipelineConfig(VanillaPipelineConfig):
    """Edits a reconstructed avatar with a text prompt by view-and-time-aware score distillation."""

    _target: Type = field(default_factory=lambda: AvatarEditPipeline)
    """target class to instantiate"""
    datamanager: KeyframeDataManagerConfig = field(default_factory=KeyframeDataManagerConfig)
    """Yields whole keyframe images."""
    model: AvatarEditModelConfig = field(default_factory=AvatarEditModelConfig)
    """The avatar; its weights come from the recon given by --load-dir."""
    keyframes: KeyframeSelectionConfig = field(default_factory=KeyframeSelectionConfig)
    """Which (camera, time) pairs the guidance sees (METHOD section 2)."""
    guidance: VTSDSGuidanceConfig = field(default_factory=VTSDSGuidanceConfig)
    """The diffusion guidance: base model, guidance scale, v, K, annealing (METHOD section 4)."""
    personalization: PersonalizationConfig = field(default_factory=PersonalizationConfig)
    """How the diffusion model is personalised on the keyframes when no matching personalisation exists."""
    personalization_dir: Optional[Path] = None
    """Folder of an ``avatarstudio personalize`` run to reuse (when its cache key matches) or to write.
    Default: a folder under ~/.cache/avatarstudio named by the cache key."""


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

    @property
    def guidance(self):
        """The VT-SDS guidance, built on first use."""
        if not self._guidance_holder:
            self._guidance_holder.append(self._setup_guidance())
        return self._guidance_holder[0]

    def _setup_guidance(self):
        datamanager = self.datamanager
        metadata = datamanager.train_dataset.metadata
        keyframes = select_keyframes(
            codes=self.model.get_frame_embeddings().detach().cpu(),
            camera_indices=metadata["camera_indices"],
            timestep_indices=metadata["timestep_indices"],
            frontal_camera_index=metadata.get("frontal_camera_index"),
            config=self.config.keyframes,
        )
        datamanager.set_keyframes([(k.camera_index, k.timestep_index) for k in keyframes])
        CONSOLE.print(f"Editing with {len(keyframes)} keyframes.")
        personalization = None
        if self.config.guidance.use_personalized:
            personalization = personalize(
                keyframes=keyframes,
                images=datamanager.keyframe_images(),
                base_model=self.config.guidance.base_model,
                config=self.config.personalization,
                output=self.config.personalization_dir,
                device=self.device,
            )
        return self.config.guidance.setup(
            device=self.device, personalization=personalization, keyframes=keyframes, prompt=self.model.config.prompt
        )

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """The model's callbacks; also records the run length, which the timestep annealing follows."""
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            self._total_steps = int(trainer.config.max_num_iterations)
        return super().get_training_callbacks(training_callback_attributes)

    def get_train_loss_dict(self, step: int):
        """Renders one keyframe whole and returns the VT-SDS and entropy losses."""
        guidance = self.guidance
        ray_bundle, batch = self.datamanager.next_train(step)
        outputs = self._model(ray_bundle)
        height, width = batch["image_height"], batch["image_width"]
        image = outputs["rgb"].reshape(height, width, 3).permute(2, 0, 1)[None]
        result = guidance(image, keyframe_indices=[batch["keyframe_index"]], step=step, total_steps=self._total_steps)
        loss_dict = self.model.get_loss_dict(outputs, batch)
        loss_dict["vt_sds"] = result["loss"]
        metrics_dict: Dict[str, Any] = {
            key: value for key, value in result.items() if key != "loss" and isinstance(value, (float, torch.Tensor))
        }
        return outputs, loss_dict, metrics_dict
