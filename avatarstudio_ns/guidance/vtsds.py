"""View-and-time-aware score distillation, VT-SDS (METHOD section 4, paper section 3.3).

One guidance object owns the base diffusion model, the personalised UNet, the prompt embeddings and the
timestep schedule; the edit model only hands it rendered images and asks for a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

from avatarstudio_ns.guidance.adapters import adapters_disabled
from avatarstudio_ns.guidance.imaging import to_model_square
from avatarstudio_ns.guidance.loading import DEFAULT_BASE_MODEL, DiffusionModel, load_diffusion
from avatarstudio_ns.guidance.personalization.personalized_model import PersonalizedModel, load_personalization
from avatarstudio_ns.guidance.prediction import add_noise, alphabar_at
from avatarstudio_ns.guidance.schedules import AnnealMode, Weighting, annealed_t_max, sds_weight

logger = logging.getLogger(__name__)


def combine_noise_predictions(
    eps_base_text: Float[Tensor, "b c h w"],
    eps_pers: Float[Tensor, "b c h w"] | None,
    eps_uncond: Float[Tensor, "b c h w"],
    w: float,
    v: float | Float[Tensor, " b"],
) -> Float[Tensor, "b c h w"]:
    """Eq. 10: Psi = w (v eps_base(z_t, s) + (1 - v) eps_pers(z_t, s_i)) + (1 - w) eps_base(z_t, "").

    Args:
        eps_base_text: Base model, edit prompt s.
        eps_pers: Personalised model, keyframe prompt s_i; may be ``None`` only where v = 1.
        eps_uncond: Base model, empty prompt.
        w: Classifier-free guidance scale.
        v: Weight of the base model's conditional prediction, a number or one per batch item.
    """
    v = torch.as_tensor(v, dtype=eps_base_text.dtype, device=eps_base_text.device)
    v = v.reshape(-1, *([1] * (eps_base_text.ndim - 1))) if v.ndim else v
    if eps_pers is None:
        if not bool((v == 1).all()):
            raise ValueError("eps_pers is needed wherever v < 1.")
        conditional = eps_base_text
    else:
        conditional = v * eps_base_text + (1.0 - v) * eps_pers
    return w * conditional + (1.0 - w) * eps_uncond


def v_for_timestep(t: int | Tensor, v_high: float, k: int) -> Tensor:
    """v of Eq. 10: ``v_high`` at noisy timesteps (t > K), 1 (base model only) at t <= K."""
    t = torch.as_tensor(t)
    return torch.where(t > k, torch.full_like(t, v_high, dtype=torch.float32), torch.ones_like(t, dtype=torch.float32))


@dataclass
class VTSDSGuidanceConfig(InstantiateConfig):
    """Configuration of :class:`VTSDSGuidance`."""

    _target: type = field(default_factory=lambda: VTSDSGuidance)
    base_model: str = DEFAULT_BASE_MODEL
    """Base diffusion model: a Hugging Face id, a local diffusers folder, or ``builtin``."""
    personalization_dir: Path | None = None
    """Folder written by ``avatarstudio personalize`` (weights, keyframes.json, personalization.json); None: the
    edit pipeline's per-capture folder in ~/.cache/avatarstudio/personalizations."""
    prompt: str = ""
    """The edit prompt s, e.g. "photo of a person with blue hair"."""
    negative_prompt: str = ""
    """Prompt of the unconditional branch (the paper: empty)."""
    guidance_scale: float = 10.0
    """Classifier-free guidance scale w of Eq. 10 (the paper: 10)."""
    v_high: float = 0.6
    """v of Eq. 10 at timesteps above K (the paper: 0.6, range 0.5-0.7). 0 with k_timestep 0 is the
    "no pretrained model in SDS" ablation."""
    k_timestep: int = 600
    """K of Eq. 10, in schedule steps: at t <= K only the base model guides (the paper: 600 of 1000)."""
    use_personalized: bool = True
    """Mix in the personalised model; off is the "original SDS" ablation (base model only, v = 1)."""
    t_min: float = 0.02
    """Lowest sampled timestep, as a fraction of the schedule."""
    t_max_start: float = 0.98
    """Highest sampled timestep at the first step, as a fraction of the schedule."""
    t_max_end: float = 0.5
    """Highest sampled timestep at the last step (reached only when annealing)."""
    anneal: AnnealMode = "linear"
    """How t_max falls over the run: linear, sqrt, or none (fixed t_max_start, the "no annealing" ablation)."""
    weighting: Weighting = "one_minus_alphabar"
    """w(t) of the gradient: 1 - alphabar_t (DreamFusion), sds (sqrt-based), or uniform."""
    guidance_resolution: int | None = None
    """Side the renders are resized to before encoding; None: the model's own resolution (512 for Stable
    Diffusion 1.5, the paper's setting)."""
    sample_posterior: bool = False
    """Sample the VAE posterior instead of taking its mean (mean: lower-variance gradients)."""
    grad_clip: float | None = None
    """Clamp each element of the latent gradient to [-grad_clip, grad_clip]; None: no clamp."""
    release_text_encoder: bool = True
    """Free the text encoder once every prompt is embedded (the edit prompt is fixed for a run)."""
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Compute dtype of the diffusion model; auto: fp16 on CUDA, fp32 on the CPU."""
    vae_fp32: bool = False
    """Keep the VAE in fp32 on CUDA."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reads configs saved before ``personalization`` was renamed ``personalization_dir`` (an edit's config.yml
        is loaded by ns-viewer, ns-render and a resumed ns-train)."""
        state = dict(state)
        if "personalization" in state:
            state.setdefault("personalization_dir", state.pop("personalization"))
        self.__dict__.update(state)


class VTSDSGuidance:
    """The VT-SDS loss on rendered images of keyframes.

    Args:
        config: Settings.
        device: Where the diffusion model runs.
        base: An already loaded base model (otherwise ``config.base_model`` is loaded).
        personalized: An already loaded personalisation (otherwise read from ``config.personalization_dir``).
    """

    def __init__(
        self,
        config: VTSDSGuidanceConfig,
        device: torch.device | str = "cpu",
        base: DiffusionModel | None = None,
        personalized: PersonalizedModel | None = None,
    ) -> None:
        self.config = config
        dtype = None if config.dtype == "auto" else config.dtype
        self.base = base or load_diffusion(config.base_model, device, dtype=dtype, vae_fp32=config.vae_fp32)
        self.personalized = personalized
        if self.personalized is None and config.use_personalized:
            if config.personalization_dir is None:
                raise ValueError(
                    "VT-SDS needs a personalised model: set personalization_dir to the folder written by "
                    "`avatarstudio personalize`, or use_personalized=False for plain SDS."
                )
            self.personalized = load_personalization(config.personalization_dir, self.base)
        self.keyframe_prompts: list[str] = self.personalized.prompts if self.personalized else []
        self.base.text_cache.precompute([config.prompt, config.negative_prompt, *self.keyframe_prompts])
        if config.release_text_encoder:
            self.base.release_text_encoder()
        self.resolution = config.guidance_resolution or self.base.resolution

    def t_max(self, step: int, total_steps: int) -> float:
        """Annealed upper end of the timestep range at ``step``."""
        c = self.config
        return annealed_t_max(step, total_steps, c.t_max_start, c.t_max_end, c.anneal)

    def v(self, t: Tensor) -> Tensor:
        """v of Eq. 10 per timestep (1 everywhere when the personalised model is off)."""
        if not self.config.use_personalized or self.personalized is None:
            return torch.ones_like(t, dtype=torch.float32)
        return v_for_timestep(t, self.config.v_high, self.config.k_timestep)

    def sample_timesteps(self, batch: int, step: int, total_steps: int, generator=None) -> Tensor:
        """Integer timesteps uniform in [t_min, t_max(step)] of the schedule, one per image."""
        n = self.base.num_train_timesteps
        low = int(round(self.config.t_min * n))
        high = max(low + 1, int(round(self.t_max(step, total_steps) * n)))
        high = min(high, n - 1) + 1
        return torch.randint(low, high, (batch,), generator=generator, device="cpu").to(self.base.device)

    def _eps_base(self, z_t: Tensor, t: Tensor, text: Tensor, uncond: Tensor) -> tuple[Tensor, Tensor]:
        """Base model's conditional and unconditional noise estimates, in one batched forward pass."""
        b = z_t.shape[0]
        with adapters_disabled(self.base.unet):
            eps = self.base.predict_epsilon(
                self.base.unet,
                torch.cat([z_t, z_t]),
                torch.cat([t, t]),
                torch.cat([text.expand(b, -1, -1), uncond.expand(b, -1, -1)]),
            )
        return eps[:b], eps[b:]

    def _eps_personalized(self, z_t: Tensor, t: Tensor, keyframe_text: Tensor) -> Tensor:
        """Personalised model's noise estimate for the keyframe prompts."""
        assert self.personalized is not None
        with self.personalized.active():
            return self.base.predict_epsilon(self.personalized.unet, z_t, t, keyframe_text)

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
        """The VT-SDS loss of rendered keyframe images.

        Args:
            images: Renders in [0, 1], with gradients to the appearance network.
            keyframe_ids: Index into the personalisation's keyframe list, one per image.
            step: Current edit step (drives the t_max annealing).
            total_steps: Length of the edit run.
            generator: Random source for timesteps and noise (CPU generator).
            foreground: The renders' accumulation, which frames the square the model sees on the head (as the
                personalisation framed the keyframes on their masks); None: each whole render, padded to a square.
            background: Colour of that padding (the renders' backdrop); None: white.

        Returns:
            ``loss_vtsds``: the surrogate 0.5 * ||z - stopgrad(z - g)||^2, summed over latent elements and
            averaged over the batch, so its gradient on each image's latent z is g / b with
            g = w(t) (Psi - eps) (Eq. 8); plus diagnostics ``t``, ``v``, ``t_max``, ``grad_norm`` (mean
            per-image norm of g) and ``nonfinite`` (1 when a non-finite g was zeroed).
        """
        c = self.config
        b = images.shape[0]
        device = self.base.device
        if foreground is not None:
            foreground = foreground.detach().to(device)
        squares = to_model_square(images.to(device), self.resolution, foreground, background)
        z = self.base.encode_images(squares, c.sample_posterior)

        t = self.sample_timesteps(b, step, total_steps, generator)
        v = self.v(t).to(device)
        eps = torch.randn(z.shape, generator=generator, device="cpu").to(device)
        alphabar = alphabar_at(self.base.alphas_cumprod, t)
        with torch.no_grad():
            z_t = add_noise(z.detach(), eps, alphabar)
            text = self.base.embed(c.prompt)
            uncond = self.base.embed(c.negative_prompt)
            eps_text, eps_uncond = self._eps_base(z_t, t, text, uncond)
            needs_personal = torch.nonzero(v < 1).flatten()
            eps_pers = None
            if len(needs_personal) > 0:  # v = 1 drops the personalised model from Eq. 10: skip its pass
                ids = torch.as_tensor(keyframe_ids, device="cpu").flatten()[needs_personal.cpu()].tolist()
                keyframe_text = self.base.embed([self.keyframe_prompts[i] for i in ids])
                eps_pers = eps_text.clone()
                eps_pers[needs_personal] = self._eps_personalized(z_t[needs_personal], t[needs_personal], keyframe_text)
            psi = combine_noise_predictions(eps_text, eps_pers, eps_uncond, c.guidance_scale, v)
            g = sds_weight(alphabar, c.weighting).reshape(-1, 1, 1, 1) * (psi - eps)
            if c.grad_clip is not None:
                g = g.clamp(-c.grad_clip, c.grad_clip)
            nonfinite = ~torch.isfinite(g).all()
            if nonfinite:
                logger.warning("VT-SDS: non-finite latent gradient at t=%s; zeroed for this step.", t.tolist())
                g = torch.zeros_like(g)
        target = (z - g).detach()
        loss = 0.5 * F.mse_loss(z, target, reduction="sum") / b
        return {
            "loss_vtsds": loss,
            "t": t,
            "v": v,
            "t_max": torch.tensor(self.t_max(step, total_steps)),
            "grad_norm": g.flatten(1).norm(dim=1).mean(),
            "nonfinite": nonfinite.float(),
        }
