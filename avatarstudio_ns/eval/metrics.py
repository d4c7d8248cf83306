"""Numbers for an edit, measured on renders with semantic labels and canonical surface points.

Pure functions on arrays (numpy, or torch tensors, which are converted): nothing here loads a model or a file.
Three properties, as in the paper's user study (see DESIGN.md, "Measuring an edit"):

- identity preservation (:func:`identity_scores`): PSNR / SSIM of the edited render against the original render,
  on the foreground pixels outside the edited region (dilated a little, so antialiased edges do not count);
- prompt fidelity (:func:`fidelity_scores`): how near the edited region's colour is to the requested colour,
  before and after the edit (CIELAB delta E, and the fraction of pixels whose nearest named colour is the
  requested one);
- temporal consistency (:func:`edit_flicker`): how much the edit itself, edited minus original colour, changes
  for one canonical surface point across time, and across views at one time.

Images are RGB in [0, 1] (treated as sRGB), shaped (num_images, H, W, 3); labels (num_images, H, W) hold the ids of
``avatarstudio_ns.data.labels``; canonical points (num_images, H, W, 3) are metres, NaN on background.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from jaxtyping import Bool, Float, Int

from avatarstudio_ns.data import labels as L

PSNR_CAP_DB = 100.0
"""PSNR reported for identical pixels (MSE below 1e-10), instead of infinity, which JSON cannot hold."""

DEFAULT_VOXEL_SIZE = 0.004
"""Edge of the canonical-space voxels that group pixels showing the same surface point, metres (4 mm: about
three pixels of a 256 px synth render, so a voxel is seen at most times and views yet stays small on the face)."""

DEFAULT_LIGHT_LEVELS: tuple[float, ...] = tuple(float(x) for x in np.round(np.linspace(0.25, 1.25, 21), 3))
"""Grey light factors a named albedo is compared under. The synth shades ``albedo * light`` with ambient 0.26 to
0.32 plus diffuse lights, so the light factor ranges from about 0.26 to 1.2 over the head; a render is compared
with the nearest shade of a colour, not with the raw albedo, which no lit pixel shows."""

# sRGB (D65) to CIE XYZ, and the D65 white point (IEC 61966-2-1).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_LAB_EPSILON = (6.0 / 29.0) ** 3

_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def _np(x) -> np.ndarray:
    """numpy view of an array or a (possibly GPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------------- colour


def srgb_to_linear(rgb: Float[np.ndarray, "*bs 3"]) -> Float[np.ndarray, "*bs 3"]:
    """Undoes the sRGB transfer curve: encoded values in [0, 1] to linear light."""
    rgb = np.clip(_np(rgb).astype(np.float64), 0.0, 1.0)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb: Float[np.ndarray, "*bs 3"]) -> Float[np.ndarray, "*bs 3"]:
    """CIELAB (D65 white) of sRGB colours in [0, 1]: L* in [0, 100], a* and b* roughly in [-128, 128].

    Example: white is (100, 0, 0), pure sRGB red about (53.24, 80.09, 67.20).
    """
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _LAB_EPSILON, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def delta_e76(lab1: Float[np.ndarray, "*bs 3"], lab2: Float[np.ndarray, "*bs 3"]) -> Float[np.ndarray, "*bs"]:
    """CIE 1976 colour difference: Euclidean distance in CIELAB (about 2.3 is a just noticeable difference)."""
    return np.linalg.norm(_np(lab1) - _np(lab2), axis=-1)


def hue_angle(lab: Float[np.ndarray, "*bs 3"]) -> Float[np.ndarray, "*bs"]:
    """CIELAB hue angle h_ab in degrees, [0, 360)."""
    lab = _np(lab)
    return np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0


def shade_lab(rgb: Float[np.ndarray, "3"], light_levels: Sequence[float] = DEFAULT_LIGHT_LEVELS) -> np.ndarray:
    """CIELAB of an albedo under each grey light level: (num_levels, 3), clipped to the displayable range."""
    shades = np.clip(np.asarray(light_levels, dtype=np.float64)[:, None] * np.asarray(rgb, dtype=np.float64), 0, 1)
    return srgb_to_lab(shades)


def shaded_distances(
    pixels: Float[np.ndarray, "num_pixels 3"],
    colors: Float[np.ndarray, "num_colors 3"],
    light_levels: Sequence[float] = DEFAULT_LIGHT_LEVELS,
    chunk: int = 1 << 15,
) -> Float[np.ndarray, "num_pixels num_colors"]:
    """Delta E76 of each pixel to the nearest shade (over ``light_levels``) of each albedo in ``colors``.

    Args:
        pixels: rendered colours, RGB in [0, 1].
        colors: reference albedos, RGB in [0, 1].
        light_levels: grey light factors; (1.0,) compares with the albedos as they are.
        chunk: pixels handled at once, to bound memory (pixels x colours x levels distances).
    """
    pixels = _np(pixels).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    shades = np.stack([shade_lab(c, light_levels) for c in colors])  # (num_colors, num_levels, 3)
    out = np.empty((len(pixels), len(colors)))
    for start in range(0, len(pixels), chunk):
        lab = srgb_to_lab(pixels[start : start + chunk])
        out[start : start + chunk] = delta_e76(lab[:, None, None, :], shades[None]).min(axis=-1)
    return out


def lit_distances(
    pixels: Float[np.ndarray, "num_pixels 3"],
    colors: Float[np.ndarray, "num_colors 3"],
    shading: Float[np.ndarray, " num_pixels"],
    specular: Float[np.ndarray, " num_pixels"],
) -> Float[np.ndarray, "num_pixels num_colors"]:
    """Delta E76 of each pixel to each albedo in ``colors`` as the synth shows it at that pixel, ``albedo * shading +
    specular`` (clipped): the colour the pixel would have on a head whose part had that albedo.

    Where the shading is known (a synth capture, :func:`avatarstudio_ns.data.synth.render.shade_rays`) this replaces
    the search over light levels, which cannot tell a white in shadow from a lit grey (a synth head's own white hair
    classified as white in 71 % of its pixels that way, dark skin as dark in 83 %: 8 cameras x 4 frames, 64 px).
    """
    pixels = _np(pixels).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    shown = np.clip(colors[None] * _np(shading).reshape(-1, 1, 1) + _np(specular).reshape(-1, 1, 1), 0.0, 1.0)
    return delta_e76(srgb_to_lab(pixels)[:, None], srgb_to_lab(shown))


def classify_colors(
    pixels: Float[np.ndarray, "num_pixels 3"],
    palette: Mapping[str, Sequence[float]],
    light_levels: Sequence[float] = DEFAULT_LIGHT_LEVELS,
) -> list[str]:
    """Nearest named colour of each pixel: the palette albedo with a shade nearest in CIELAB (see shaded_distances)."""
    names = list(palette)
    distances = shaded_distances(pixels, np.array([palette[n] for n in names]), light_levels)
    return [names[i] for i in distances.argmin(axis=1)]


# ------------------------------------------------------------------------------------------------------ masks


def region_ids(regions: Iterable[str | int]) -> tuple[int, ...]:
    """Label ids of named regions (keys of ``labels.REGIONS`` or ``labels.LABELS``) or raw ids."""
    ids: set[int] = set()
    for region in regions:
        if isinstance(region, (int, np.integer)):
            ids.add(int(region))
        elif region in L.REGIONS:
            ids.update(L.REGIONS[region])
        elif region in L.LABELS:
            ids.add(L.LABELS[region])
        else:
            raise ValueError(f"Unknown region {region!r}; choose one of {sorted(L.REGIONS)} or a label name.")
    return tuple(sorted(ids))


def region_mask(labels: Int[np.ndarray, "*bs H W"], regions: Iterable[str | int]) -> Bool[np.ndarray, "*bs H W"]:
    """Pixels whose label belongs to one of ``regions``."""
    return np.isin(_np(labels), region_ids(regions))


def region_iou(
    region: Float[np.ndarray, "*bs H W"], target: Bool[np.ndarray, "*bs H W"], foreground: Bool[np.ndarray, "*bs H W"]
) -> float:
    """Intersection over union of a soft region (counted where it is above one half) and a target mask, on the
    foreground pixels (the backdrop is neither)."""
    inside = (_np(region) > 0.5) & _np(foreground)
    target = _np(target).astype(bool) & _np(foreground)
    union = int((inside | target).sum())
    return float((inside & target).sum() / union) if union else float("nan")


def region_precision_recall(
    region: Float[np.ndarray, "*bs H W"], target: Bool[np.ndarray, "*bs H W"], foreground: Bool[np.ndarray, "*bs H W"]
) -> tuple[float, float]:
    """Precision (share of the region on the target) and recall (share of the target in the region) of a soft region
    counted as :func:`region_iou` counts it; 0 where the region or the target is empty."""
    inside = (_np(region) > 0.5) & _np(foreground)
    target = _np(target).astype(bool) & _np(foreground)
    both = int((inside & target).sum())
    return both / max(int(inside.sum()), 1), both / max(int(target.sum()), 1)


def _morph(mask: Bool[np.ndarray, "*bs H W"], pixels: int, dilate: bool) -> Bool[np.ndarray, "*bs H W"]:
    mask = _np(mask).astype(bool)
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    op = cv2.dilate if dilate else cv2.erode
    flat = mask.reshape(-1, *mask.shape[-2:]).astype(np.uint8)
    # Replicated borders: the image edge neither grows nor eats away a region that touches it.
    out = np.stack([op(m, kernel, borderType=cv2.BORDER_REPLICATE) for m in flat]).astype(bool)
    return out.reshape(mask.shape)


def dilate_mask(mask: Bool[np.ndarray, "*bs H W"], pixels: int) -> Bool[np.ndarray, "*bs H W"]:
    """Grows each (H, W) mask by a disc of radius ``pixels``."""
    return _morph(mask, pixels, dilate=True)


def erode_mask(mask: Bool[np.ndarray, "*bs H W"], pixels: int) -> Bool[np.ndarray, "*bs H W"]:
    """Shrinks each (H, W) mask by a disc of radius ``pixels``."""
    return _morph(mask, pixels, dilate=False)


def preserved_mask(
    labels: Int[np.ndarray, "*bs H W"], target_regions: Iterable[str | int], dilation: int = 2
) -> Bool[np.ndarray, "*bs H W"]:
    """Foreground pixels an edit of ``target_regions`` should leave alone: labelled, and farther than ``dilation``
    pixels from the target region (antialiased edge pixels mix both sides)."""
    labels = _np(labels)
    return (labels != L.BACKGROUND) & ~dilate_mask(region_mask(labels, target_regions), dilation)


# --------------------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class IdentityScores:
    """How well an edit kept the pixels it should not touch."""

    psnr: float
    """PSNR (dB) of the edited against the original render over the preserved pixels of all images (one pooled MSE);
    PSNR_CAP_DB when they are identical."""
    ssim: float
    """Mean SSIM over the preserved pixels; 1 when identical."""
    num_pixels: int
    """Preserved pixels measured, over all images."""


def masked_psnr(
    pred: Float[np.ndarray, "*bs H W 3"], ref: Float[np.ndarray, "*bs H W 3"], mask: Bool[np.ndarray, "*bs H W"]
) -> float:
    """PSNR (dB, images in [0, 1]) over the masked pixels, capped at PSNR_CAP_DB; NaN for an empty mask."""
    mask = _np(mask).astype(bool)
    if not mask.any():
        return float("nan")
    err = (_np(pred).astype(np.float64) - _np(ref).astype(np.float64))[mask]
    mse = float(np.mean(err**2))
    return PSNR_CAP_DB if mse <= 1e-10 else min(PSNR_CAP_DB, -10.0 * float(np.log10(mse)))


def ssim_map(pred: Float[np.ndarray, "H W 3"], ref: Float[np.ndarray, "H W 3"]) -> Float[np.ndarray, "H W"]:
    """Per-pixel SSIM (Gaussian window 11 px, sigma 1.5, data range 1), channel mean, same size as the input."""
    x = _np(pred).astype(np.float64)
    y = _np(ref).astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return (num / den).mean(axis=-1)


def masked_ssim(
    pred: Float[np.ndarray, "*bs H W 3"], ref: Float[np.ndarray, "*bs H W 3"], mask: Bool[np.ndarray, "*bs H W"]
) -> float:
    """Mean SSIM over the masked pixels of all images; NaN for an empty mask.

    Outside the mask ``pred`` is replaced by ``ref`` first, so that the SSIM window of a preserved pixel next to
    the edited region measures only changes of preserved pixels.
    """
    pred, ref, mask = _np(pred), _np(ref), _np(mask).astype(bool)
    if not mask.any():
        return float("nan")
    pred = pred.reshape(-1, *pred.shape[-3:])
    ref = ref.reshape(-1, *ref.shape[-3:])
    mask = mask.reshape(-1, *mask.shape[-2:])
    total, count = 0.0, 0
    for p, r, m in zip(pred, ref, mask, strict=True):
        if not m.any():
            continue
        composite = np.where(m[..., None], p, r)
        total += float(ssim_map(composite, r)[m].sum())
        count += int(m.sum())
    return total / count


def identity_scores(
    original: Float[np.ndarray, "num_images H W 3"],
    edited: Float[np.ndarray, "num_images H W 3"],
    labels: Int[np.ndarray, "num_images H W"],
    target_regions: Iterable[str | int],
    dilation: int = 2,
) -> IdentityScores:
    """PSNR / SSIM of ``edited`` against ``original`` outside the (dilated) target regions, on the foreground."""
    mask = preserved_mask(labels, target_regions, dilation)
    return IdentityScores(
        psnr=masked_psnr(edited, original, mask), ssim=masked_ssim(edited, original, mask), num_pixels=int(mask.sum())
    )


# --------------------------------------------------------------------------------------------------- fidelity


@dataclass(frozen=True)
class FidelityScores:
    """How far the target region moved toward the requested colour. Distances are shading-compensated CIELAB
    delta E76 (lit_distances where the synth's shading is known, else shaded_distances); lower is nearer."""

    delta_e_before: float
    """Mean distance of the original render's target pixels to the requested colour."""
    delta_e_after: float
    """Mean distance of the edited render's target pixels to the requested colour."""
    delta_e_improvement: float
    """delta_e_before - delta_e_after: positive when the edit moved toward the request."""
    hit_fraction_before: float
    """Fraction of the original's target pixels whose nearest named colour is the requested one."""
    hit_fraction_after: float
    """Same for the edited render."""
    hue_error_before: float
    """Hue angle difference (degrees, 0 to 180) between the original region's mean colour and the requested colour;
    NaN when the requested colour is (nearly) grey, whose hue means nothing."""
    hue_error_after: float
    """Same for the edited render."""
    num_pixels: int
    """Target pixels measured, over all images."""


MIN_CHROMA_FOR_HUE = 8.0
"""CIELAB chroma under which a colour counts as grey and has no hue error."""


def _hue_error(pixels: np.ndarray, target_lab: np.ndarray) -> float:
    if np.hypot(target_lab[1], target_lab[2]) < MIN_CHROMA_FOR_HUE:
        return float("nan")
    mean = srgb_to_lab(pixels).mean(axis=0)
    diff = abs(float(hue_angle(mean)) - float(hue_angle(target_lab)))
    return min(diff, 360.0 - diff)


def fidelity_scores(
    original_pixels: Float[np.ndarray, "num_pixels 3"],
    edited_pixels: Float[np.ndarray, "num_pixels 3"],
    target_rgb: Sequence[float],
    palette: Mapping[str, Sequence[float]] | None = None,
    target_name: str | None = None,
    light_levels: Sequence[float] = DEFAULT_LIGHT_LEVELS,
    shading: Float[np.ndarray, " num_pixels"] | None = None,
    specular: Float[np.ndarray, " num_pixels"] | None = None,
) -> FidelityScores:
    """Colour of the target region against the requested colour, before (original) and after (edited) the edit.

    Args:
        original_pixels: the target region's pixels in the original renders, RGB in [0, 1].
        edited_pixels: the same pixels in the edited renders.
        target_rgb: the requested albedo.
        palette: named albedos pixels are classified into (e.g. the synth's HAIR_COLORS); the requested colour is
            added under ``target_name`` when missing. None classifies against the requested colour alone.
        target_name: the requested colour's name in ``palette``.
        light_levels: grey light factors of the shading compensation.
        shading: the synth's grey shading factor of each pixel, when known: colours are then compared as
            :func:`lit_distances` shows them at each pixel, and ``light_levels`` is not used.
        specular: the synth's highlight at each pixel (zero when None and ``shading`` is given).
    """
    original_pixels = _np(original_pixels).reshape(-1, 3)
    edited_pixels = _np(edited_pixels).reshape(-1, 3)
    name = target_name or "requested"
    colors = dict(palette or {})
    if name not in colors:
        colors[name] = tuple(target_rgb)
    names = list(colors)
    table = np.array([colors[n] for n in names], dtype=np.float64)
    target = np.asarray(target_rgb, dtype=np.float64)
    target_lab = srgb_to_lab(target)

    def distances(pixels: np.ndarray, colors: np.ndarray) -> np.ndarray:
        if shading is None:
            return shaded_distances(pixels, colors, light_levels)
        highlight = np.zeros(len(pixels)) if specular is None else specular
        return lit_distances(pixels, colors, shading, highlight)

    def measure(pixels: np.ndarray) -> tuple[float, float, float]:
        if len(pixels) == 0:
            return float("nan"), float("nan"), float("nan")
        to_target = distances(pixels, target[None])[:, 0]
        nearest = distances(pixels, table).argmin(axis=1)
        return float(to_target.mean()), float(np.mean(nearest == names.index(name))), _hue_error(pixels, target_lab)

    de_before, hit_before, hue_before = measure(original_pixels)
    de_after, hit_after, hue_after = measure(edited_pixels)
    return FidelityScores(
        delta_e_before=de_before,
        delta_e_after=de_after,
        delta_e_improvement=de_before - de_after,
        hit_fraction_before=hit_before,
        hit_fraction_after=hit_after,
        hue_error_before=hue_before,
        hue_error_after=hue_after,
        num_pixels=len(edited_pixels),
    )


# --------------------------------------------------------------------------------------------------- temporal


@dataclass(frozen=True)
class FlickerScores:
    """How much the edit (edited - original colour, RGB in [0, 1]) varies on one canonical surface voxel; 0 for an
    edit that is the same at every time and from every view. NaN when no voxel was seen twice."""

    time_flicker: float
    """Across time: per voxel, the RMS deviation (colour vector length) over timesteps of the per-timestep mean edit,
    averaged over voxels weighted by their pixel count."""
    view_flicker: float
    """Across views at one time: per (voxel, timestep), the RMS deviation over cameras of the per-camera mean edit,
    averaged weighted by pixel count."""
    time_voxels: int
    """Voxels seen at two or more timesteps (the ones time_flicker averages)."""
    view_voxels: int
    """(voxel, timestep) pairs seen by two or more cameras."""


def _grouped_spread(
    outer: Int[np.ndarray, "num_pixels k"], inner: Int[np.ndarray, " num_pixels"], values: Float[np.ndarray, "n 3"]
) -> tuple[float, int]:
    """Count-weighted mean over ``outer`` groups of the RMS deviation, across ``inner`` keys, of per-key means.

    Each inner key (a timestep, or a camera) counts once whatever its pixel count, so a voxel covering many pixels
    in one view does not dominate its own spread.
    """
    keys = np.concatenate([outer, inner[:, None]], axis=1)
    cells, cell_of = np.unique(keys, axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)
    cell_count = np.bincount(cell_of, minlength=len(cells)).astype(np.float64)
    cell_mean = np.stack([np.bincount(cell_of, values[:, c], minlength=len(cells)) for c in range(3)], 1)
    cell_mean /= cell_count[:, None]
    groups, group_of = np.unique(cells[:, :-1], axis=0, return_inverse=True)
    group_of = group_of.reshape(-1)
    n_inner = np.bincount(group_of, minlength=len(groups)).astype(np.float64)
    group_mean = np.stack([np.bincount(group_of, cell_mean[:, c], minlength=len(groups)) for c in range(3)], 1)
    group_mean /= n_inner[:, None]
    sq = ((cell_mean - group_mean[group_of]) ** 2).sum(axis=1)
    spread = np.sqrt(np.bincount(group_of, sq, minlength=len(groups)) / n_inner)
    weight = np.bincount(group_of, cell_count, minlength=len(groups))
    used = n_inner >= 2
    if not used.any():
        return float("nan"), 0
    return float(np.sum(spread[used] * weight[used]) / np.sum(weight[used])), int(used.sum())


def edit_flicker(
    original: Float[np.ndarray, "num_images H W 3"],
    edited: Float[np.ndarray, "num_images H W 3"],
    canonical: Float[np.ndarray, "num_images H W 3"],
    timestep_indices: Int[np.ndarray, " num_images"],
    camera_indices: Int[np.ndarray, " num_images"],
    mask: Bool[np.ndarray, "num_images H W"] | None = None,
    voxel_size: float = DEFAULT_VOXEL_SIZE,
) -> FlickerScores:
    """Temporal and multi-view consistency of an edit, through the avatar's canonical surface points.

    The edit d = edited - original is compared, not the edited colour itself: shading and view-dependent effects
    that both renders share cancel, and an unedited avatar scores exactly zero.

    Args:
        original: original renders.
        edited: edited renders of the same cameras and times.
        canonical: canonical surface point of each pixel (metres, NaN on background).
        timestep_indices: performance frame of each image.
        camera_indices: rig camera of each image.
        mask: pixels to measure (e.g. the target region); all pixels with a canonical point when None.
        voxel_size: edge of the canonical voxels that identify a surface point, metres.
    """
    original, edited, canonical = _np(original), _np(edited), _np(canonical)
    n = original.shape[0]
    valid = np.isfinite(canonical).all(axis=-1)
    if mask is not None:
        valid &= _np(mask).astype(bool)
    edit = (edited.astype(np.float64) - original.astype(np.float64))[valid]
    voxels = np.floor(canonical[valid].astype(np.float64) / voxel_size).astype(np.int64)
    image_of = np.broadcast_to(np.arange(n)[:, None, None], valid.shape)[valid]
    times = np.asarray(_np(timestep_indices), dtype=np.int64).reshape(n)[image_of]
    cameras = np.asarray(_np(camera_indices), dtype=np.int64).reshape(n)[image_of]
    if len(edit) == 0:
        return FlickerScores(float("nan"), float("nan"), 0, 0)
    time_flicker, time_voxels = _grouped_spread(voxels, times, edit)
    view_flicker, view_voxels = _grouped_spread(np.concatenate([voxels, times[:, None]], axis=1), cameras, edit)
    return FlickerScores(time_flicker, view_flicker, time_voxels, view_voxels)
