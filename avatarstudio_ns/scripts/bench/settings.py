"""What one device's measurements run with: the plan, and the constants every job shares."""

from __future__ import annotations

from dataclasses import dataclass

from avatarstudio_ns.builtin.small_model import SmallModelConfig

SD15_RANDOM = "sd15-random"
"""Model name: Stable Diffusion 1.5's shapes with random weights, built in memory (no download)."""
ACCEPTANCE_RATIO = 1.3
"""Target of the issue: an edit run's VT-SDS guidance costs at most this many times plain SDS."""
EDIT_PROMPT = "photo of a person with blue hair"
"""Edit prompt of the guidance (its content does not change the cost)."""
NUM_KEYFRAMES = 6
"""Keyframes the personalisation trains on (more only lengthens its set-up, not a step)."""


@dataclass
class SuitePlan:
    """Resolved settings of one device's measurements."""

    device: str
    """Torch device: cpu or cuda."""
    model: str
    """Diffusion model: builtin, a diffusers folder, sd15-random, or small (written with the given sizes)."""
    small_model: SmallModelConfig | None = None
    """Sizes of the small model written when ``model`` is ``small``."""
    model_note: str = ""
    """Why this model was chosen (e.g. the built-in model is absent)."""
    dtype: str = "fp32"
    """Compute dtype of the diffusion model: fp32 or fp16."""
    recon_preset: str = "cpu"
    """Recon model sizes: cpu (avatarstudio-recon-cpu) or gpu (avatarstudio-recon)."""
    recon_rays: int = 1024
    """Rays per recon training iteration."""
    render_resolution: int = 64
    """Side in pixels of the keyframe render of an edit step."""
    guidance_batch: int = 1
    """Images per VT-SDS step (the paper: 1)."""
    personalize_batch: int = 3
    """Keyframes per personalisation step (the paper: 3)."""
    personalize_mode: str = "lora"
    """Personalisation mode: lora or full (the paper)."""
    steps: int = 5
    """Timed iterations of each measure."""
    warmup: int = 2
    """Untimed iterations first."""
    schedule_steps: int = 10000
    """Length of the edit run whose timestep schedule weights the VT-SDS branches (the paper: 10 000)."""
    seed: int = 0
    """Seed of rays, images, models and timesteps."""
