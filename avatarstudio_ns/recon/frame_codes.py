"""Per-frame latent codes e_j, interpolated in time (METHOD.md section 1)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Float
from torch import Tensor, nn


class FrameCodes(nn.Module):
    """One learned code per captured frame; code k sits at time k / (num_timesteps - 1).

    A time between two frames gets the linear interpolation of its two neighbouring codes, so the
    viewer's time slider and ns-render can show any t in [0, 1]; times outside [0, 1] clamp.

    A frame no training image shows (VHAP's test split holds the last ~30 % of the timesteps) would keep its random
    initial code and render an expression nobody learnt; it takes the code of the nearest trained frame instead (the
    earlier one on a tie), so the avatar holds the last trained expression past the training frames.

    Args:
        num_timesteps: number of captured frames T.
        dim: code dimension.
        init_std: standard deviation of the random initial codes (distinct codes let every frame
            move on its own from the first step).
        trained_frames: the frames training images show; None: every frame.
    """

    def __init__(
        self, num_timesteps: int, dim: int, init_std: float = 0.1, trained_frames: Iterable[int] | None = None
    ) -> None:
        super().__init__()
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
        self.num_timesteps = num_timesteps
        self.dim = dim
        self.codes = nn.Parameter(torch.randn(num_timesteps, dim) * init_std)
        """The per-frame codes, [num_timesteps, dim]."""
        frames = torch.arange(num_timesteps)
        trained = sorted({int(f) for f in trained_frames} & set(range(num_timesteps))) if trained_frames else []
        trained = torch.tensor(trained) if trained else frames
        # Not saved: it follows from the capture, which every load reads again.
        self.register_buffer("source", trained[(frames[:, None] - trained[None]).abs().argmin(dim=1)], persistent=False)

    def forward(self, times: Float[Tensor, "*bs 1"]) -> Float[Tensor, "*bs dim"]:
        """Returns the code of every time, interpolating neighbouring frames linearly.

        Args:
            times: times in [0, 1].
        """
        codes = self.codes[self.source]
        if self.num_timesteps == 1:
            return codes[0].expand(*times.shape[:-1], self.dim)
        position = times[..., 0].to(self.codes.dtype).clamp(0.0, 1.0) * (self.num_timesteps - 1)
        lower = position.floor().long().clamp(max=self.num_timesteps - 2)
        frac = (position - lower.to(position.dtype))[..., None]
        return torch.lerp(codes[lower], codes[lower + 1], frac)

    def codes_at_frames(self) -> Float[Tensor, "num_timesteps dim"]:
        """The code each frame renders with (an untrained frame's is its nearest trained frame's), detached (for
        keyframe selection)."""
        return self.codes[self.source].detach()
