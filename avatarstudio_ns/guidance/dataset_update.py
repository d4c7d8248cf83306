"""The "edit the images in 2D, then fit" baseline of the Instruct-NeRF2NeRF family, as a guidance.

Instead of a score, it keeps one target image per keyframe, starting from the captured image. Every
``update_every`` steps the keyframe being rendered gets a new target: its current render, edited by SDEdit
(noised to ``strength`` of the schedule, then denoised by the base model under the edit prompt). The loss pulls
each render towards its keyframe's latest target, so the edit spreads into the avatar as the dataset is updated
(iterative dataset update). It sees the same keyframes, base model and appearance parameters as VT-SDS, so the
two compare on equal terms (``avatarstudio ablate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

from avatarstudio_ns.guidance.adapters import adapters_disabled
from avatarstudio_ns.guidance.imaging import paste_square, square_boxes, to_model_square
from avatarstudio_ns.guidance.loading import DEFAULT_BASE_MODEL, DiffusionModel, load_diffusion


@dataclass
class DatasetUpdateGuidanceConfig(InstantiateConfig):
    """Configuration of :class:`DatasetUpdateGuidance`."""

    _target: type = field(default_factory=lambda: DatasetUpdateGuidance)
    """target class to instantiate"""
    base_model: str = DEFAULT_BASE_MODEL
    """Base diffusion model: a Hugging Face id, a local diffusers folder, or ``builtin``."""
    prompt: str = ""
    """The edit prompt, e.g. "photo of a person with blue hair"."""
    negative_prompt: str = ""
    """Prompt of the unconditional branch."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale of the image edits (Instruct-NeRF2NeRF's text scale: 7.5)."""
    strength: float = 0.6
    """SDEdit strength: the fraction of the schedule a render is noised to before it is denoised. Higher
    follows the prompt more and the avatar less."""
    num_inference_steps: int = 20
    """DDIM steps of the whole schedule; an edit runs about ``strength`` times as many."""
    update_every: int = 10
    """Replace one keyframe's target every this many steps (Instruct-NeRF2NeRF: 10)."""
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Compute dtype of the diffusion model; auto: fp16 on CUDA, fp32 on the CPU."""
    vae_fp32: bool = False
    """Keep the VAE in fp32 on CUDA."""
    seed: int = 0
    """Seed of the image edits' noise."""


class DatasetUpdateGuidance:
    """Per-keyframe targets edited in 2D, and the loss that fits renders to them.

    Args:
        config: Settings.
        images: The captured keyframe images in [0, 1], one per keyframe (the first targets; resized to the
            renders on first use).
        device: Where the diffusion model runs.
        base: An already loaded base model (otherwise ``config.base_model`` is loaded).
    """

    def __init__(
        self,
        config: DatasetUpdateGuidanceConfig,
        images: Sequence[Float[Tensor, "3 h w"]],
        device: torch.device | str = "cpu",
        base: DiffusionModel | None = None,
    ) -> None:
        self.config = config
        dtype = None if config.dtype == "auto" else config.dtype
        self.base = base or load_diffusion(config.base_model, device, dtype=dtype, vae_fp32=config.vae_fp32)
        self.targets: list[Tensor] = [image.detach().float().cpu() for image in images]
        self.edited = [False] * len(self.targets)
        """Whether each keyframe's target is an edit yet (the captured image until then)."""
        self._calls = 0
        self._generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.text = self.base.embed(config.prompt)
        self.uncond = self.base.embed(config.negative_prompt)
        self.pipe = StableDiffusionImg2ImgPipeline(
            vae=self.base.vae,
            text_encoder=self.base.text_encoder,
            tokenizer=self.base.tokenizer,
            unet=self.base.unet,
            scheduler=DDIMScheduler.from_config(self.base.scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)

    def resume_state(self) -> dict[str, Any]:
        """The targets, which are edits, the update count and the generator: what the edit's checkpoint keeps, so a
        resumed run fits the edits it had made (not the captured images again) and draws the same noise."""
        return {
            "targets": [target.clone() for target in self.targets],
            "edited": list(self.edited),
            "calls": self._calls,
            "generator": self._generator.get_state(),
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`resume_state` kept."""
        self.targets = [target.float().cpu() for target in state["targets"]]
        self.edited = list(state["edited"])
        self._calls = int(state["calls"])
        self._generator.set_state(state["generator"])

    @torch.no_grad()
    def edit_image(
        self,
        image: Float[Tensor, "3 h w"],
        foreground: Float[Tensor, "h w"] | None = None,
        background: Float[Tensor, "3"] | Sequence[float] | None = None,
    ) -> Float[Tensor, "3 h w"]:
        """SDEdit of the square the model sees of one image at the model's resolution, pasted back into the image.

        Args:
            image: The image in [0, 1].
            foreground: Its foreground weight per pixel, which frames the square on the head
                (:func:`~avatarstudio_ns.guidance.imaging.square_boxes`); None: the whole image, padded to a square.
            background: Colour of that padding; None: white.
        """
        height, width = image.shape[-2:]
        box = square_boxes(None if foreground is None else foreground[None], height, width)
        square = to_model_square(
            image[None].to(self.base.device), self.base.resolution, background=background, boxes=box
        )
        with adapters_disabled(self.base.unet):
            edited = self.pipe(
                image=square,
                prompt_embeds=self.text,
                negative_prompt_embeds=self.uncond,
                strength=self.config.strength,
                num_inference_steps=self.config.num_inference_steps,
                guidance_scale=self.config.guidance_scale,
                generator=self._generator,
                output_type="pt",
            ).images
        side = int(box[0, 2])
        edited = F.interpolate(edited.float().cpu(), size=(side, side), mode="area")[0].clamp(0.0, 1.0)
        # Outside the square the model saw, the image stays as it was.
        return paste_square(edited, box[0], image.detach().float().cpu())

    def __call__(
        self,
        images: Float[Tensor, "b 3 h w"],
        keyframe_ids: Sequence[int] | Tensor,
        step: int,
        total_steps: int,
        generator: torch.Generator | None = None,
        foreground: Float[Tensor, "b h w"] | None = None,
        background: Float[Tensor, "3"] | Sequence[float] | None = None,
    ) -> dict[str, Tensor]:
        """The fitting loss of rendered keyframe images; updates one target every ``update_every`` calls.

        Args:
            images: Renders in [0, 1], with gradients to the appearance network.
            keyframe_ids: Index into the keyframe list, one per image.
            step: Current edit step (unused: the update schedule counts calls).
            total_steps: Length of the edit run (unused).
            generator: Unused (the edits draw from the guidance's own seeded generator).
            foreground: The renders' accumulation, which frames the square the model edits on the head; None: each
                whole render, padded to a square.
            background: Colour of that padding (the renders' backdrop); None: white.

        Returns:
            ``loss_image``: mean squared error of the renders to their keyframes' targets; plus ``edited_fraction``
            (keyframes whose target is an edit) and ``updated`` (1 on a step that replaced a target).
        """
        ids = [int(i) for i in torch.as_tensor(keyframe_ids).flatten().tolist()]
        updated = self._calls % self.config.update_every == 0
        self._calls += 1
        if updated:
            # Instruct-NeRF2NeRF edits the current render, so each edit starts from what the avatar now is.
            head = None if foreground is None else foreground[0].detach()
            self.targets[ids[0]] = self.edit_image(images[0].detach(), head, background)
            self.edited[ids[0]] = True
        targets = []
        for image, i in zip(images, ids, strict=True):
            if self.targets[i].shape[-2:] != image.shape[-2:]:
                # A captured image larger than the render: brought to the render's size once, then kept.
                self.targets[i] = F.interpolate(self.targets[i][None], size=image.shape[-2:], mode="area")[0]
            targets.append(self.targets[i].to(image.device))
        loss = F.mse_loss(images, torch.stack(targets))
        return {
            "loss_image": loss,
            "edited_fraction": torch.tensor(sum(self.edited) / len(self.edited)),
            "updated": torch.tensor(float(updated)),
        }
