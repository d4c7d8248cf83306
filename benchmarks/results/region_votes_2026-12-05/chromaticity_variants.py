"""Record driver: the colour growth with shading-invariant colour (rgb chromaticity) variants.

- ``chroma``: GrabCut compares (weighted lightness, r / (r+g+b), g / (r+g+b)) instead of CIELAB.
- ``chroma-reprieve``: as ``chroma``, and surely-outside pixels whose chromaticity is nearer the surely-inside
  pixels' mean than the surely-outside pixels' mean start as probably inside.
- ``lab-reprieve-chroma``: CIELAB growth as shipped, with the chromaticity reprieve.
- ``chroma0``, ``chroma0-reprieve``: as ``chroma`` and ``chroma-reprieve`` with no lightness at all.
- ``lab``: the shipped growth, through this driver (must match benchmarks/region_iou.py).

The variants replace ``growth_colours`` (the colours GrabCut compares) and wrap ``grow_by_colour``'s seeds (as
benchmarks/results/region_misses_2026-12-05/growth_variants.py does); the growth itself is the shipped one.

    python chromaticity_variants.py chroma --recon <recon config.yml> --output out.json --prompts ...
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/, for region_iou
import region_iou  # noqa: E402

from avatarstudio_ns.edit import region as R  # noqa: E402

EPS = 0.03
_colours, _grow = R.growth_colours, R.grow_by_colour


def chromaticity(rgb):
    s = rgb.sum(-1, keepdims=True) + EPS
    return rgb[..., :2] / s


def chroma_colours(image, lightness_weight):
    """Weighted lightness as shipped, rgb chromaticity in place of CIELAB's a and b."""
    pixels = _colours(image, lightness_weight).astype(np.float64)
    rgb = image.detach().cpu().float().clamp(0.0, 1.0).numpy()
    c = chromaticity(rgb) * 255.0 * 1.5
    pixels[..., 1:] = c
    return np.ascontiguousarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def with_reprieve(grow):
    """``grow`` with the surely-outside pixels whose chromaticity is nearer the inside's mean (the inside less its
    edge, as the growth seeds it) than the surely-outside pixels' mean started as probably inside."""

    def reprieved(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
        if surely_outside is not None:
            h = head.cpu().numpy()
            core, out = inside.cpu().numpy() & h, surely_outside.cpu().numpy() & h
            interior = cv2.erode(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            core = interior if interior.any() else core
            if core.any() and out.any():
                c = chromaticity(image.detach().cpu().float().clamp(0.0, 1.0).numpy())
                mi, mo = c[core].mean(0), c[out].mean(0)
                given = (np.linalg.norm(c - mi, axis=-1) < np.linalg.norm(c - mo, axis=-1)) & out
                given = torch.from_numpy(given).to(head.device)
                surely_outside = surely_outside & ~given
                probably_inside = given if probably_inside is None else (probably_inside | given)
        return grow(image, inside, head, probably_inside, lightness_weight, surely_outside)

    return reprieved


def with_weight(grow, weight):
    """``grow`` at a fixed lightness weight."""

    def weighted(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
        return grow(image, inside, head, probably_inside, weight, surely_outside)

    return weighted


VARIANTS = {
    "lab": (False, False, None),
    "chroma": (True, False, None),
    "chroma-reprieve": (True, True, None),
    "lab-reprieve-chroma": (False, True, None),
    "chroma0-reprieve": (True, True, 0.0),
    "chroma0": (True, False, 0.0),
}

if __name__ == "__main__":
    import tyro

    chroma, reprieve, weight = VARIANTS[sys.argv.pop(1)]
    if chroma:
        R.growth_colours = chroma_colours
    grow = with_reprieve(_grow) if reprieve else _grow
    R.grow_by_colour = grow if weight is None else with_weight(grow, weight)
    tyro.cli(region_iou.RegionIoU).main()
