"""The edited avatar: the recon model with only its canonical appearance trainable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Type

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from torch import Tensor
from torch.nn import Parameter

from avatarstudio_ns.guidance.regularizers import opacity_entropy
from avatarstudio_ns.recon.model import AvatarReconModel, AvatarReconModelConfig


@dataclass
class AvatarEditModelConfig(AvatarReconModelConfig):
    """The recon's model, edited by text; every recon option keeps its meaning (the weights come from it)."""

    _target: Type = field(default_factory=lambda: AvatarEditModel)
    """target class to instantiate"""
    prompt: str = "photo of a person with blue hair"
    """What the edited avatar should look like (nerfstudio's ``--prompt`` sets it)."""
    entropy_loss_mult: float = 1e-3
    """Weight of the binary entropy of each ray's opacity (METHOD Eq. 9): keeps the edit from fogging the
    background or thinning the surface."""


class AvatarEditModel(AvatarReconModel):
    """The avatar under edit: trains the canonical appearance A only.

    The deformation, the per-frame codes and the proposal networks are frozen (no gradients, no optimiser),
    so the edit is made once in canonical space and the recon's motion carries it to every frame.
    """

    config: AvatarEditModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        for module in (self.deformation, self.frame_codes, self.proposal_networks):
            module.requires_grad_(False)
        # The proposals were trained by the recon: sample with their final weighting from the first step.
        self.proposal_sampler.set_anneal(1.0)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """Only the canonical appearance (hash grid, density and colour MLPs) is optimised."""
        return {"appearance": list(self.appearance.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """None: the proposal schedule callbacks of the recon only matter while the proposals train."""
        self.apply_cpu_threads()
        return []

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Any], metrics_dict=None) -> Dict[str, Tensor]:
        """Losses of the edit that need no diffusion model: the opacity entropy.

        The score distillation loss is added by the pipeline, which owns the guidance.
        """
        return {"opacity_entropy": self.config.entropy_loss_mult * opacity_entropy(outputs["accumulation"])}
