"""The edit region: where in canonical space the prompt acts, one grid shared by every frame.

Per-pixel relevance maps of the keyframes (guidance/relevance.py) say which pixels are in the region; each pixel's
membership is lifted through its keyframe's rendered depth and the avatar's fixed deformation into canonical space
and averaged in a voxel grid, a vote of the keyframes that see each point. A canonical point
is one point of the head at every moment, so the region is the same surface region at every frame and from
every view by construction. The edit model blends the edited colour with the recon's inside it and keeps the
recon's colour outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor, nn

from avatarstudio_ns.data.keyframes import Keyframe
from avatarstudio_ns.guidance.loading import DiffusionModel
from avatarstudio_ns.guidance.relevance import prompt_relevance


@dataclass
class EditRegionConfig:
    """How the edit region is found (METHOD section 4 edits all of A; we keep what the prompt does not name)."""

    enabled: bool = True
    """Edit only inside the region where the base model's prediction under the edit prompt differs from its
    prediction under ``reference_prompt``; the recon's colour is kept outside. Off: the whole appearance may
    change (the paper)."""
    reference_prompt: str = "photo of a person"
    """A prompt that describes the avatar as it is, without the edit."""
    noise_levels: tuple[float, ...] = (0.3, 0.5, 0.7)
    """Noise levels (fractions of the schedule) at which the two predictions are compared."""
    num_noises: int = 8
    """Noise draws per level and keyframe."""
    threshold: float = 0.4
    """With ``split_by_distribution`` off: the relevance (scaled so that the head's 99th percentile is 1) at which a
    canonical point is half in the region; the region rises from 0 to 1 over ``softness`` around it. Mean / worst
    region IoU against the synth's labels over six hair and skin prompts on two 96-frame avatars with the first
    built-in model, thresholds 0.25 / 0.35 / 0.45 / 0.55: mean 0.67 / 0.77 / 0.77 / 0.69, worst 0.59 / 0.67 / 0.74 /
    0.57 (docs/edit_settings.md)."""
    split_by_distribution: bool = True
    """Choose the threshold per prompt as Otsu's split of the head's scaled relevance values (the two-class split
    with the largest between-class variance), instead of ``threshold``: the inside it leaves is precise for hair and
    skin prompts alike (0.94-0.98 on two avatars; docs/edit_settings.md), which ``colour_growth`` needs."""
    softness: float = 0.2
    """Width of each keyframe pixel's soft edge between in and out, in the same units as ``threshold``."""
    seed: int = 0
    """Seed of the noise draws."""
    colour_growth: bool = True
    """Grow each keyframe's region over the pixels that share its colours before lifting it: OpenCV's GrabCut, with
    the region's inside as surely inside, the rest of the head as probably outside and the backdrop as surely
    outside, moves the head's pixels whose colour the inside explains better into it. The relevance is strongest
    where the part the prompt names is most typical (the crown, for hair) and weak on the rest of it (a bob's sides);
    the part shares one colour. The region's soft edge starts as probably inside (see :func:`grow_by_colour`). Region
    IoU on four hair and skin prompts of the blonde bob: 0.53-0.71 without, 0.63-0.85 with (docs/edit_settings.md);
    its hair 0.61-0.78 with the growth of 2026-12-04, 0.70-0.79 with today's (recall 0.63-0.80 -> 0.73-0.81)."""
    growth_lightness_weight: float = 0.25
    """Weight of lightness against hue in the colours the growth compares (CIELAB, lightness scaled by this): light
    and shadow change a part's lightness across the head far more than its hue, and a weight of 1 left a bob's
    shadowed lower hair out of its hair. Region IoU on six hair and skin prompts of a held-out identity 0.67-0.83 at
    1, 0.82-0.89 at 0.25 (docs/edit_settings.md, "Growth in light and hue")."""
    vote_threshold: float = 0.5
    """Share of the keyframe pixels that see a canonical point which must put it in the region for it to be half in
    (the region rises from 0 to 1 over a share of 0.5 around it). Each keyframe pixel votes with its membership (the
    relevance's smooth step; 1 where the colour growth took it in), so a keyframe where the part is most relevant
    counts no more than one where it is weak; averaging the relevance itself let the crown's strong pixels outvote
    the rest of the part. Region IoU over 30 hair and skin prompts on five recons (the suite's three, the demo's,
    grey-short-tan): mean / worst 0.872 / 0.614 averaging relevance, 0.885 / 0.637 with votes at 0.5 (higher on 28
    of 30); at 0.4 recall rises and precision falls, 0.873 / 0.578 on the 24 measured (relevance: 0.873 / 0.614). The
    bob's hair recall 0.76-0.82 -> 0.80-0.87 (docs/edit_settings.md, "Votes, not relevance")."""
    surely_outside_share: float = 0.25
    """Share of each keyframe's own head pixels under the split (its least relevant ones) that the colour growth
    must leave outside whatever their colour; the rest of them start outside and join the region where their colour
    is the inside's. Per keyframe, not over the whole set: the bob's lower hair is as weak as its face in the side
    views, below the mean of the whole set's lower class (the rule before, which kept it out), while each view's own
    least relevant pixels are its neck's and chin's. Region IoU over 24 hair and skin prompts on four recons (the
    suite's three, the demo's): mean / worst 0.884 / 0.598 with the whole set's rule, 0.903 / 0.627 with each
    keyframe's own lowest quarter (the bob's hair 0.79-0.84 -> 0.86-0.93); the suite's 13 hair and skin edits meeting
    both targets 10 -> 13 (docs/edit_settings.md, "Each keyframe's own least relevant pixels")."""
    first_frame_only: bool = True
    """Fit the region on the first frame's keyframes (one per camera) only, not on the frontal camera's frames the
    time-aware keyframes add; the edit itself still trains on every keyframe. Those frames show the frontal view six
    more times, so that view counts seven times in the region against once for each other camera. The suite's 13
    hair and skin edits (three identities, 300 steps): identity outside the target 40.4 -> 42.2 dB on average, 28.5
    -> 30.05 at worst; hit 0.92 -> 0.93; edits meeting both targets 7 -> 9 (docs/edit_settings.md, "The ablation on
    the suite")."""


class EditRegion(nn.Module):
    """A soft region in [0, 1] over the scene box, as a voxel grid looked up trilinearly.

    Until :meth:`fit` is called the region is 1 everywhere (the whole appearance may change).

    Args:
        aabb: Scene box [2, 3] of the canonical space.
        resolution: Voxels per side.
    """

    def __init__(self, aabb: Float[Tensor, "2 3"], resolution: int = 32) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.register_buffer("grid", torch.ones(resolution, resolution, resolution))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def resolution(self) -> int:
        """Voxels per side."""
        return int(self.grid.shape[0])

    def _unit(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        low, high = self.aabb[0].to(positions), self.aabb[1].to(positions)
        return (positions - low) / (high - low)

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 1"]:
        """The region's value at canonical positions (0 outside the box once fitted)."""
        coords = self._unit(positions).reshape(1, -1, 1, 1, 3) * 2.0 - 1.0
        # grid_sample reads (x, y, z) against a [D, H, W] = [z, y, x] volume.
        volume = self.grid.permute(2, 1, 0)[None, None].to(positions)
        padding = "zeros" if bool(self.fitted) else "border"
        values = F.grid_sample(volume, coords, mode="bilinear", padding_mode=padding, align_corners=True)
        return values.reshape(*positions.shape[:-1], 1)

    @torch.no_grad()
    def fit(self, positions: Float[Tensor, "n 3"], values: Float[Tensor, " n"]) -> None:
        """Sets the grid to the mean of ``values`` over the canonical ``positions`` in each voxel's neighbourhood.

        A voxel's value is the mean over points in it and its 26 neighbours, so the thin shell of surface voxels
        that the keyframes saw covers the samples a renderer takes just in front of and behind the surface.
        Voxels near no point are 0 (not part of the region).
        """
        g = self.resolution
        unit = self._unit(positions.float())
        inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
        index = (unit[inside] * (g - 1)).round().long()
        flat = (index[:, 0] * g + index[:, 1]) * g + index[:, 2]
        sums = torch.zeros(g**3, device=positions.device).index_add_(0, flat, values[inside].float())
        counts = torch.zeros(g**3, device=positions.device).index_add_(0, flat, torch.ones(len(flat)).to(sums))
        box = torch.ones(1, 1, 3, 3, 3, device=positions.device)
        sums = F.conv3d(sums.reshape(1, 1, g, g, g), box, padding=1)[0, 0]
        counts = F.conv3d(counts.reshape(1, 1, g, g, g), box, padding=1)[0, 0]
        self.grid.copy_(torch.where(counts > 0, sums / counts.clamp_min(1e-8), torch.zeros_like(sums)))
        self.fitted.fill_(True)


VOTE_SOFTNESS = 0.5
"""Width of the region's soft edge in shares of the keyframes' votes (:attr:`EditRegionConfig.vote_threshold`)."""


def sharpen(relevance: Tensor, threshold: float, softness: float) -> Tensor:
    """Smooth step from 0 to 1 over [threshold - softness / 2, threshold + softness / 2]."""
    x = ((relevance - threshold) / max(softness, 1e-6) + 0.5).clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def region_keyframes(keyframes: Sequence[Keyframe], config: EditRegionConfig) -> list[int]:
    """Indices of the keyframes the region is fitted on.

    Args:
        keyframes: The edit's keyframes, first-frame ones first.
        config: Region settings.

    Returns:
        Every index, or with ``config.first_frame_only`` those of the first frame's keyframes (all of them when the
        keyframes have none, e.g. cameras restricted to ones without an image at the first frame).
    """
    first = [i for i, keyframe in enumerate(keyframes) if keyframe.source == "first_frame"]
    return first if config.first_frame_only and first else list(range(len(keyframes)))


@torch.no_grad()
def fit_edit_region(
    model,
    cameras: Sequence[Cameras],
    base: DiffusionModel,
    prompt: str,
    config: EditRegionConfig,
) -> dict[str, float]:
    """Finds where ``prompt`` acts on the keyframes and sets ``model.edit_region`` to it, in canonical space.

    Args:
        model: The edit model (its ``canonical_surface`` renders a keyframe and lifts its pixels).
        cameras: One camera per keyframe the region is fitted on (:func:`region_keyframes`), at the render
            resolution and the keyframe's time.
        base: The base diffusion model, text encoder still loaded.
        prompt: The edit prompt.
        config: Region settings.

    Returns:
        Diagnostics: the relevance scale and the fraction of the head's keyframe pixels in the region.
    """
    generator = torch.Generator().manual_seed(config.seed)
    text, reference = base.embed(prompt), base.embed(config.reference_prompt)
    positions, relevances, images, heads = [], [], [], []
    for camera in cameras:
        canonical, accumulation, rgb = model.canonical_surface(camera)
        image = rgb.permute(2, 0, 1)[None].clamp(0.0, 1.0)
        # Framed on the head as VT-SDS frames the renders (the same square, whatever the image's aspect).
        relevance = prompt_relevance(
            base,
            image,
            text,
            reference,
            config.noise_levels,
            config.num_noises,
            generator=generator,
            foreground=accumulation[None],
            background=model.background_color,
        )[0].to(canonical.device)
        head = accumulation > 0.5
        positions.append(canonical[head])
        relevances.append(relevance)
        images.append(rgb)
        heads.append(head)
    values = torch.cat([r[h] for r, h in zip(relevances, heads, strict=True)])
    scale = max(float(torch.quantile(values, 0.99)) if len(values) else 1.0, 1e-8)
    scaled = [r / scale for r in relevances]
    head_values = values / scale
    threshold = otsu_threshold(head_values) if config.split_by_distribution and len(values) else config.threshold
    if config.colour_growth:
        # Surely inside above the soft edge, probably inside on it, surely outside in each keyframe's own least
        # relevant pixels; a pixel the growth takes in counts as fully inside: at the top of the soft edge.
        inside_value, edge_value = threshold + 0.5 * config.softness, threshold - 0.5 * config.softness
        scaled = [
            torch.where(
                grow_by_colour(
                    i,
                    r >= inside_value,
                    h,
                    r >= edge_value,
                    config.growth_lightness_weight,
                    r < surely_outside_value(r[h], threshold, config.surely_outside_share),
                ).to(r.device),
                r.clamp_min(inside_value),
                r,
            )
            for r, i, h in zip(scaled, images, heads, strict=True)
        ]
        head_values = torch.cat([r[h] for r, h in zip(scaled, heads, strict=True)])
    votes = sharpen(head_values, threshold, config.softness)
    model.edit_region.fit(torch.cat(positions), votes)
    model.edit_region.grid.copy_(sharpen(model.edit_region.grid, config.vote_threshold, VOTE_SOFTNESS))
    return {
        "relevance_scale": scale,
        "threshold": threshold,
        "region_fraction": float(votes.mean()) if len(votes) else 0.0,
    }


def surely_outside_value(values: Float[Tensor, " n"], threshold: float, share: float) -> float:
    """The relevance under which a keyframe's head pixels are surely outside the region: the ``share`` quantile of
    its pixels under the split ``threshold`` (nothing when none is under it).

    Per keyframe, because how relevant the part's far side looks depends on the view: the bob's lower hair is as
    weak as the face in the side views, among the least relevant pixels of the whole set, while in a back view the
    least relevant pixels are the neck's.
    """
    lower = values[values < threshold]
    return float(torch.quantile(lower.float(), share)) if len(lower) else float("-inf")


def otsu_threshold(values: Float[Tensor, " n"], bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the split of their histogram with the largest between-class variance."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    counts = torch.histc(values.float(), bins=bins, min=low, max=high).double()
    centres = low + (torch.arange(bins, dtype=torch.float64) + 0.5) * (high - low) / bins
    below = counts.cumsum(0)
    below_sum = (counts * centres).cumsum(0)
    total, total_sum = below[-1], below_sum[-1]
    above = total - below
    mean_below = below_sum / below.clamp_min(1e-12)
    mean_above = (total_sum - below_sum) / above.clamp_min(1e-12)
    between = below * above * (mean_below - mean_above) ** 2
    # The threshold lies between the bin that ends the lower class and the next one.
    return float(centres[int(between.argmax())] + 0.5 * (high - low) / bins)


def grow_by_colour(
    image: Float[Tensor, "h w 3"],
    inside: Bool[Tensor, "h w"],
    head: Bool[Tensor, "h w"],
    probably_inside: Bool[Tensor, "h w"] | None = None,
    lightness_weight: float = 1.0,
    surely_outside: Bool[Tensor, "h w"] | None = None,
) -> Bool[Tensor, "h w"]:
    """The head's pixels that GrabCut (colour models of inside and outside, and a smooth cut between them) puts
    with ``inside``.

    GrabCut starts from ``inside`` less its edge pixels as surely inside, its edge pixels and ``probably_inside`` as
    probably inside, the rest of the head as probably outside and everything off the head as surely outside. Edge
    pixels mix the colours of two parts: seeded as surely inside, they taught the inside's colour model the part
    next to it. What GrabCut starts as probably outside builds the outside's colour model, so a part that
    ``inside`` reaches only in places (a bob's lower hair, weaker to the diffusion model) stays out unless it is
    probably inside from the start. ``surely_outside`` (head pixels the prompt surely does not reach) stays out
    whatever its colour: with the part's shadowed side probably inside, a neighbouring part of a close colour (a
    dark neck under shadowed blonde hair) would otherwise join it. Colours are compared in CIELAB with lightness
    scaled by ``lightness_weight``. Nothing grows from an empty inside or one that already covers the head.
    """
    on_head = head.detach().cpu().numpy()
    core = inside.detach().cpu().numpy() & on_head
    if not core.any() or core.sum() == on_head.sum():
        return inside & head
    labels = np.full(core.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    if probably_inside is not None:
        labels[probably_inside.detach().cpu().numpy() & on_head] = cv2.GC_PR_FGD
    interior = cv2.erode(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if interior.any():  # else the inside is all edge, and all of it is the seed
        labels[core & ~interior] = cv2.GC_PR_FGD
        core = interior
    if surely_outside is not None:
        labels[surely_outside.detach().cpu().numpy() & on_head] = cv2.GC_BGD
    labels[core] = cv2.GC_FGD
    labels[~on_head] = cv2.GC_BGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(growth_colours(image, lightness_weight), labels, None, background, foreground, 5, cv2.GC_INIT_WITH_MASK)
    grown = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)) & on_head
    return torch.from_numpy(grown).to(head.device)


def growth_colours(image: Float[Tensor, "h w 3"], lightness_weight: float) -> np.ndarray:
    """The colours :func:`grow_by_colour` compares: CIELAB with lightness scaled by ``lightness_weight`` about its
    middle, as an 8-bit image [h, w, 3] (GrabCut's input)."""
    rgb = image.detach().cpu().float().clamp(0.0, 1.0).numpy()
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2Lab)  # L in [0, 100], a and b about [-128, 127]
    lightness = lab[..., 0] * (255.0 / 100.0) * lightness_weight + 128.0 * (1.0 - lightness_weight)
    pixels = np.stack([lightness, lab[..., 1] + 128.0, lab[..., 2] + 128.0], axis=-1)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 255.0).round().astype(np.uint8))
