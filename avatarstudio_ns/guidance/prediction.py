"""Conversions between what a diffusion UNet predicts (epsilon, v, x0) and the noise epsilon.

With alphabar_t the cumulative product of the schedule, x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps
and v = sqrt(alphabar_t) eps - sqrt(1 - alphabar_t) x_0 (Salimans & Ho). Score distillation needs eps.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _expand(values: Float[Tensor, " b"], like: Tensor) -> Tensor:
    """Broadcast per-item schedule values over the trailing dimensions of ``like``."""
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like)


def alphabar_at(alphas_cumprod: Float[Tensor, " T"], t: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
    """alphabar_t for integer timesteps, on the device of ``t``."""
    return alphas_cumprod.to(t.device)[t.long()].float()


def v_to_epsilon(
    v: Float[Tensor, "b c h w"], x_t: Float[Tensor, "b c h w"], alphabar: Float[Tensor, " b"]
) -> Float[Tensor, "b c h w"]:
    """Noise from a v prediction: eps = sqrt(alphabar) v + sqrt(1 - alphabar) x_t."""
    a = _expand(alphabar, x_t)
    return a.sqrt() * v + (1.0 - a).sqrt() * x_t


def sample_to_epsilon(
    x0: Float[Tensor, "b c h w"], x_t: Float[Tensor, "b c h w"], alphabar: Float[Tensor, " b"]
) -> Float[Tensor, "b c h w"]:
    """Noise from an x_0 prediction: eps = (x_t - sqrt(alphabar) x_0) / sqrt(1 - alphabar)."""
    a = _expand(alphabar, x_t)
    return (x_t - a.sqrt() * x0) / (1.0 - a).clamp_min(1e-8).sqrt()


def to_epsilon(
    output: Float[Tensor, "b c h w"], x_t: Float[Tensor, "b c h w"], alphabar: Float[Tensor, " b"], prediction_type: str
) -> Float[Tensor, "b c h w"]:
    """Convert a UNet output of the given prediction type to a noise estimate."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return v_to_epsilon(output, x_t, alphabar)
    if prediction_type == "sample":
        return sample_to_epsilon(output, x_t, alphabar)
    raise ValueError(f"Unknown prediction type {prediction_type!r}; expected one of {PREDICTION_TYPES}.")


def training_target(
    x0: Float[Tensor, "b c h w"], noise: Float[Tensor, "b c h w"], alphabar: Float[Tensor, " b"], prediction_type: str
) -> Float[Tensor, "b c h w"]:
    """The model's native regression target (the denoising loss of Eq. 6)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = _expand(alphabar, x0)
        return a.sqrt() * noise - (1.0 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"Unknown prediction type {prediction_type!r}; expected one of {PREDICTION_TYPES}.")


def add_noise(
    x0: Float[Tensor, "b c h w"], noise: Float[Tensor, "b c h w"], alphabar: Float[Tensor, " b"]
) -> Float[Tensor, "b c h w"]:
    """x_t = sqrt(alphabar) x_0 + sqrt(1 - alphabar) eps (what the scheduler's ``add_noise`` computes)."""
    a = _expand(alphabar, x0)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise
