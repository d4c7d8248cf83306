"""An attribute probe: a tiny CNN that reads hair colour, skin tone and eye colour off a 64 px head image.

It is trained on exact renders of the synthetic world and then used as a judge: a text-to-image sample of
"a person with blue hair and dark skin" passes when the probe says blue and dark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from rich.console import Console
from torch import Tensor, nn

from avatarstudio_ns.builtin.head_images import TABLES, HeadImages
from avatarstudio_ns.builtin.progress import StageProgress

PROBED: tuple[str, ...] = ("hair", "skin", "eyes")
"""The attributes the probe predicts (keys of TABLES)."""


@dataclass
class ProbeConfig:
    """How the probe is built and trained."""

    width: int = 16
    """Channels of the first convolution (doubling twice)."""
    steps: int = 1500
    """Optimiser steps (400 left it at 84 % on the skin tones of real renders, 1500 at 90 %)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to zero)."""
    noise: float = 0.03
    """Std of the Gaussian pixel noise added in training, so VAE-decoded samples do not look foreign."""
    log_every: int = 100
    """Steps between log lines."""


class AttributeProbe(nn.Module):
    """Four stride-2 convolutions to a 4x4 grid, then one linear head per attribute (positions are kept,
    because hair and skin are told apart by where they are)."""

    def __init__(self, width: int = 16, resolution: int = 64) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(4, c_out), nn.SiLU()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = chans[-1] * (resolution // 16) ** 2
        self.heads = nn.ModuleDict({key: nn.Linear(flat, len(TABLES[key])) for key in PROBED})

    def forward(self, images: Float[Tensor, "b 3 h w"]) -> dict[str, Tensor]:
        """Logits per attribute for images in [-1, 1]."""
        f = self.features(images)
        return {key: head(f) for key, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: Float[Tensor, "b 3 h w"], batch_size: int = 256) -> dict[str, Tensor]:
        """Predicted class index per attribute."""
        self.eval()
        out: dict[str, list[Tensor]] = {key: [] for key in PROBED}
        for start in range(0, images.shape[0], batch_size):
            for key, logits in self(images[start : start + batch_size]).items():
                out[key].append(logits.argmax(-1))
        return {key: torch.cat(v) for key, v in out.items()}


def train_probe(data: HeadImages, cfg: ProbeConfig, seed: int = 0, console: Console | None = None) -> AttributeProbe:
    """Train a probe on rendered heads (random flips and pixel noise as augmentation).

    Args:
        data: Renders with their attributes.
        cfg: Training settings.
        seed: Seed of weights and batches.
        console: Where progress goes (default: a new console).
    """
    console = console or Console()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images = data.images()
    labels = {key: torch.from_numpy(data.attrs[key]) for key in PROBED}
    probe = AttributeProbe(cfg.width, images.shape[-1])
    optimizer = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    loss_fn = nn.CrossEntropyLoss()
    probe.train()
    with StageProgress(console, "probe", cfg.steps, 0, cfg.log_every) as bar:
        for step in range(cfg.steps):
            idx = torch.randint(images.shape[0], (cfg.batch_size,), generator=generator)
            x = images[idx]
            flip = torch.rand(cfg.batch_size, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = x + cfg.noise * torch.randn(x.shape, generator=generator)
            logits = probe(x)
            loss = sum(loss_fn(logits[key], labels[key][idx]) for key in PROBED)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(step + 1, loss=loss.item())
    return probe.eval()


def accuracy(predicted: dict[str, Tensor], target: dict[str, np.ndarray | Tensor]) -> dict[str, float]:
    """Fraction of correct predictions per attribute present in both."""
    return {
        key: float((predicted[key] == torch.as_tensor(target[key])).float().mean()) for key in PROBED if key in target
    }
