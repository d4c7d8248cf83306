"""An attribute probe: a small CNN that reads every colour attribute and the hair style off a head image.

It is trained on exact renders of the synthetic world and then used as a judge: a text-to-image sample of
"a person with blue hair and green eyes" passes when the probe reads blue hair and green eyes.

An iris is about six pixels of a 64 px front view and in no pixel of a back view, so a classifier of the whole
image (the first probe: strided convolutions to a 4x4 grid) did not learn eye colour (24 %, chance 20 %). This one
reads colours where they are: it segments the image into the synth's semantic labels (trained on the rendered
label maps), then classifies each colour attribute from its features averaged over the pixels it labels as that
attribute's region (hair, skin, iris, lips, brows). The same soft masks say whether a region is visible at all, so
an eye colour is only judged on samples that show an eye. The hair style, a matter of shape, is read from the
whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from rich.console import Console
from torch import Tensor, nn
from torch.nn import functional as F

from avatarstudio_ns.builtin.head_images import TABLES, HeadImages
from avatarstudio_ns.builtin.progress import StageProgress
from avatarstudio_ns.data import labels as L

PROBED: tuple[str, ...] = ("hair", "skin", "eyes", "lips", "brows", "style")
"""The attributes the probe predicts (keys of TABLES)."""

REGIONS: dict[str, tuple[int, ...]] = {
    "hair": (L.HAIR,),
    "skin": (L.SKIN,),
    "eyes": (L.IRIS,),
    "lips": (L.LIPS,),
    "brows": (L.BROWS,),
}
"""Colour attribute -> the label ids of the pixels its colour is read from. Ears and neck are left out of skin:
they are shaded darker and vary more."""

MIN_PIXELS: dict[str, float] = {"hair": 4.0, "skin": 8.0, "eyes": 2.0, "lips": 3.0, "brows": 2.0}
"""Pixels (of a 64 px image; scaled with the area at other sizes) a region needs to count as visible."""

MASK_FLOOR = 0.25
"""Region probability below which a pixel adds nothing to the region's pooled features: the small leftover
probability of the thousands of other pixels would otherwise outweigh a six-pixel iris."""

NUM_LABELS = len(L.LABELS)


@dataclass
class ProbeConfig:
    """How the probe is built and trained."""

    width: int = 16
    """Channels of the full-resolution features (the coarser levels have 2x and 4x as many)."""
    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to zero)."""
    seg_weight: float = 1.0
    """Weight of the per-pixel label loss against the attribute losses."""
    label_balance: float = 0.5
    """Each label's pixels are weighted by its frequency to the power minus this (0: plain; 1: every label counts
    as much as the background). An iris is 0.3 % of the pixels; unweighted it is never predicted."""
    noise: float = 0.03
    """Std of the Gaussian pixel noise added in training, so VAE-decoded samples do not look foreign."""
    blur_prob: float = 0.3
    """Probability of a slight blur of a training image (VAE reconstructions are softer than renders)."""
    bare_iris_prob: float = 0.0
    """Probability that a training image's sclera is painted over with its skin colour, shaded, and labelled skin.
    The model's samples draw an eye as a coloured mark with little white around it, which the probe trained on
    exact eyes mostly takes for a brow. Off by default: at 0.5 (with ``wide_iris_prob`` 0.5) the probe finds the
    eyes of most samples but reads the eye colour of real renders worse (docs/builtin_model.md)."""
    wide_iris_prob: float = 0.0
    """Probability that a training image's irises are widened by one pixel on each side, in their own colour (the
    samples draw irises as short horizontal strokes). Off by default, as ``bare_iris_prob``."""
    log_every: int = 100
    """Steps between log lines."""


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    groups = 4 if c_out % 4 == 0 else 1
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())


class AttributeProbe(nn.Module):
    """Segment, then read each region's colour.

    A small encoder-decoder (full, 1/2, 1/4 and 1/8 resolution, skip connections) gives per-pixel features; a
    1x1 convolution turns them into label logits. Each colour attribute is classified by a small MLP from the
    features and the RGB averaged over its region's soft mask (the predicted label probabilities). The hair
    style is classified from the coarsest features, pooled on a 4x4 grid and globally.

    Args:
        width: Channels at full resolution.
        resolution: Image side the probe is trained at (sets the visibility thresholds).
    """

    def __init__(self, width: int = 16, resolution: int = 64) -> None:
        super().__init__()
        w = width
        self.resolution = resolution
        self.enc0 = _block(3, w)
        self.enc1 = _block(w, 2 * w, stride=2)
        self.enc2 = nn.Sequential(_block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w))
        self.enc3 = nn.Sequential(_block(4 * w, 4 * w, stride=2), _block(4 * w, 4 * w))
        self.dec2 = _block(8 * w, 4 * w)
        self.dec1 = _block(6 * w, 2 * w)
        # 1x1 at full resolution: the 3x3 of enc0 and the coarser levels already see the neighbourhood, and a
        # 3x3 here would cost more than the rest of the network.
        self.dec0 = nn.Sequential(nn.Conv2d(3 * w, w, 1), nn.GroupNorm(4, w), nn.SiLU())
        self.seg = nn.Conv2d(w, NUM_LABELS, 1)
        pooled = w + 3
        self.colour_heads = nn.ModuleDict(
            {
                key: nn.Sequential(nn.Linear(pooled, 2 * w), nn.SiLU(), nn.Linear(2 * w, len(TABLES[key])))
                for key in REGIONS
            }
        )
        self.style_head = nn.Linear(4 * w * 17, len(TABLES["style"]))

    def forward(
        self, images: Float[Tensor, "b 3 h w"], label_maps: Int[Tensor, "b h w"] | None = None
    ) -> dict[str, Tensor]:
        """Label logits (``"labels"``: b, num_labels, h, w), the region masks the colours are pooled over
        (``"mask_<key>"``: b, h, w; probabilities, zero under ``MASK_FLOOR``) and the logits of every attribute of
        PROBED, for images in [-1, 1].

        Args:
            images: The images.
            label_maps: True label maps; given (in training), colours are pooled over the true regions, so the
                colour heads learn from the first step instead of waiting for the segmentation to find a
                six-pixel iris. Without them (judging), over the predicted regions.
        """
        e0 = self.enc0(images)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:]), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:]), e0], 1))
        logits = self.seg(d0)
        probs = logits.softmax(1)
        features = torch.cat([d0, images], 1)
        out: dict[str, Tensor] = {"labels": logits}
        for key, ids in REGIONS.items():
            if label_maps is not None:
                mask = torch.isin(label_maps, torch.tensor(ids)).float()
            else:
                mask = probs[:, list(ids)].sum(1)
                mask = mask * (mask > MASK_FLOOR)
            pooled = (features * mask[:, None]).sum((2, 3)) / (mask.sum((1, 2))[:, None] + 1e-3)
            out[key] = self.colour_heads[key](pooled)
            out[f"mask_{key}"] = mask
        grid = F.adaptive_avg_pool2d(e3, 4).flatten(1)
        out["style"] = self.style_head(torch.cat([grid, e3.mean((2, 3))], 1))
        return out

    def min_pixels(self, key: str, side: int) -> float:
        """Pixels a region needs to count as visible in an image of side ``side``."""
        return MIN_PIXELS[key] * (side / 64.0) ** 2

    def predict(self, images: Float[Tensor, "b 3 h w"], batch_size: int = 128) -> dict[str, Tensor]:
        """Predicted class index per attribute, and ``visible_<key>`` (bool) per colour attribute: whether enough
        pixels are labelled as its region (the same rule as ``visible_regions`` on rendered labels). The hair
        style is always judged."""
        return ProbeEnsemble([self]).predict(images, batch_size)


class ProbeEnsemble:
    """Probes trained alike from different seeds, judging together: label and attribute probabilities are averaged
    before the decision.

    One probe is a noisy judge of samples, which are unlike the renders it learnt from: three probes that differ
    only in their seed read the eye colour of the same held-out samples right in 19, 39 and 29 % and lip colour
    in 96, 92 and 69 % (docs/builtin_model.md); on real renders the three together beat each one.

    Args:
        probes: The probes (one gives exactly its own judgement).
    """

    def __init__(self, probes: list[AttributeProbe]) -> None:
        if not probes:
            raise ValueError("A probe ensemble needs at least one probe.")
        self.probes = probes

    @torch.no_grad()
    def predict(self, images: Float[Tensor, "b 3 h w"], batch_size: int = 128) -> dict[str, Tensor]:
        """As :meth:`AttributeProbe.predict`, from the probes' averaged probabilities."""
        out: dict[str, list[Tensor]] = {}
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size]
            label_probs, attribute_probs = self._probabilities(x)
            labels = label_probs.argmax(1)
            for key in PROBED:
                out.setdefault(key, []).append(attribute_probs[key].argmax(-1))
            for key, ids in REGIONS.items():
                pixels = torch.isin(labels, torch.tensor(ids)).sum((1, 2))
                out.setdefault(f"visible_{key}", []).append(pixels >= self.probes[0].min_pixels(key, x.shape[-1]))
        return {key: torch.cat(v) for key, v in out.items()}

    @torch.no_grad()
    def label_map(self, images: Float[Tensor, "b 3 h w"], batch_size: int = 128) -> Int[Tensor, "b h w"]:
        """The label (``avatarstudio_ns.data.labels``) of each pixel, from the probes' averaged probabilities: the
        map ``predict`` reads the regions' visibility from."""
        return torch.cat([self._probabilities(x)[0].argmax(1) for x in images.split(batch_size)])

    def _probabilities(self, x: Float[Tensor, "b 3 h w"]) -> tuple[Tensor, dict[str, Tensor]]:
        """Label probabilities (b, labels, h, w) and per attribute (b, classes), averaged over the probes."""
        results = []
        for probe in self.probes:
            probe.eval()
            results.append(probe(x))
        labels = torch.stack([r["labels"].softmax(1) for r in results]).mean(0)
        return labels, {key: torch.stack([r[key].softmax(-1) for r in results]).mean(0) for key in PROBED}


def visible_regions(labels: UInt8[np.ndarray, "n h w"]) -> dict[str, np.ndarray]:
    """Per colour attribute, whether its region is large enough to judge in each rendered label map."""
    side = labels.shape[-1]
    return {
        key: np.isin(labels, ids).sum((1, 2)) >= MIN_PIXELS[key] * (side / 64.0) ** 2 for key, ids in REGIONS.items()
    }


def _blur(x: Tensor, which: Tensor) -> Tensor:
    """A 3x3 binomial blur of the images where ``which`` is set."""
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16.0).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return torch.where(which[:, None, None, None], blurred, x)


def vary_eyes(
    x: Float[Tensor, "b 3 h w"],
    seg: Int[Tensor, "b h w"],
    bare: Tensor,
    wide: Tensor,
    shade: Float[Tensor, " b"],
) -> tuple[Tensor, Tensor]:
    """Eyes drawn as the built-in model's samples draw them, with labels to match.

    Args:
        x: Images in [-1, 1].
        seg: Their label maps.
        bare: (b,) bool; where set, the sclera takes the image's mean skin colour times ``shade`` and the skin label.
        wide: (b,) bool; where set, every skin or sclera pixel left or right of an iris pixel takes the image's mean
            iris colour and the iris label.
        shade: (b,) factors of the skin colour painted over the sclera (a lid's shadow is darker than the cheek).

    Returns:
        The images and label maps (new tensors).
    """

    def mean_colour(mask: Tensor) -> Tensor:
        return ((x * mask[:, None]).sum((2, 3)) / mask.sum((1, 2)).clamp_min(1)[:, None])[:, :, None, None]

    skin, iris, sclera = seg == L.SKIN, seg == L.IRIS, seg == L.SCLERA
    skin_colour, iris_colour = mean_colour(skin), mean_colour(iris)
    # Widen first, so the widened iris takes sclera pixels that the bare eye would otherwise turn to skin.
    beside = F.max_pool2d(iris[:, None].float(), (1, 3), 1, (0, 1))[:, 0] > 0
    grow = beside & ~iris & (skin | sclera) & wide[:, None, None]
    x = torch.where(grow[:, None], iris_colour.expand_as(x), x)
    seg = torch.where(grow, torch.full_like(seg, L.IRIS), seg)
    cover = (seg == L.SCLERA) & bare[:, None, None]
    x = torch.where(cover[:, None], (skin_colour * shade[:, None, None, None]).expand_as(x), x)
    seg = torch.where(cover, torch.full_like(seg, L.SKIN), seg)
    return x, seg


def train_probe(data: HeadImages, cfg: ProbeConfig, seed: int = 0, console: Console | None = None) -> AttributeProbe:
    """Train a probe on rendered heads and their label maps (random flips, blur, pixel noise and, when asked for,
    eyes drawn as samples draw them, as augmentation).

    A colour attribute's loss counts only the images whose rendered labels show its region.

    Args:
        data: Renders with their attributes and labels.
        cfg: Training settings.
        seed: Seed of weights and batches.
        console: Where progress goes (default: a new console).
    """
    if data.labels is None:
        raise ValueError("The probe learns from label maps; these renders have none (render them anew).")
    console = console or Console()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images = data.images()
    label_maps = torch.from_numpy(data.labels).long()
    targets = {key: torch.from_numpy(data.attrs[key]) for key in PROBED}
    visible = {key: torch.from_numpy(v) for key, v in visible_regions(data.labels).items()}
    frequency = torch.bincount(label_maps.flatten(), minlength=NUM_LABELS).float() / label_maps.numel()
    label_weight = (frequency + 1e-4) ** -cfg.label_balance
    label_weight = label_weight / (label_weight * frequency).sum()
    probe = AttributeProbe(cfg.width, images.shape[-1])
    optimizer = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    probe.train()
    with StageProgress(console, "probe", cfg.steps, 0, cfg.log_every) as bar:
        for step in range(cfg.steps):
            idx = torch.randint(images.shape[0], (cfg.batch_size,), generator=generator)
            x, seg = images[idx], label_maps[idx]
            flip = torch.rand(cfg.batch_size, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            seg = torch.where(flip[:, None, None], seg.flip(-1), seg)
            if cfg.bare_iris_prob > 0 or cfg.wide_iris_prob > 0:
                # Drawn only when on, so the default probe is the one every earlier record was judged by.
                bare = torch.rand(cfg.batch_size, generator=generator) < cfg.bare_iris_prob
                wide = torch.rand(cfg.batch_size, generator=generator) < cfg.wide_iris_prob
                shade = 0.6 + 0.4 * torch.rand(cfg.batch_size, generator=generator)
                x, seg = vary_eyes(x, seg, bare, wide, shade)
            x = _blur(x, torch.rand(cfg.batch_size, generator=generator) < cfg.blur_prob)
            x = x + cfg.noise * torch.randn(x.shape, generator=generator)
            out = probe(x, seg)
            loss = cfg.seg_weight * F.cross_entropy(out["labels"], seg, weight=label_weight)
            for key in PROBED:
                per_image = F.cross_entropy(out[key], targets[key][idx], reduction="none")
                if key in REGIONS:
                    weight = visible[key][idx].float()
                    per_image = per_image * weight * cfg.batch_size / weight.sum().clamp_min(1.0)
                loss = loss + per_image.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(step + 1, loss=loss.item())
    return probe.eval()


def accuracy(
    predicted: dict[str, Tensor], target: dict[str, np.ndarray | Tensor], visible: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Fraction of correct predictions per attribute of PROBED present in both, among the images where the
    attribute is visible (``visible``: per attribute, a bool per image; absent attributes count every image).
    An attribute visible in no image is left out."""
    scores = {}
    for key in PROBED:
        if key not in target or key not in predicted:
            continue
        correct = (predicted[key] == torch.as_tensor(target[key])).numpy()
        seen = np.ones(len(correct), bool) if visible is None or key not in visible else np.asarray(visible[key])
        if seen.any():
            scores[key] = float(correct[seen].mean())
    return scores
