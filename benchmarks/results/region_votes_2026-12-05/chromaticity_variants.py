"""Record driver: the colour growth with shading-invariant colour (rgb chromaticity) variants.

- ``chroma``: GrabCut compares (weighted lightness, r / (r+g+b), g / (r+g+b)) instead of CIELAB.
- ``chroma-reprieve``: as ``chroma``, and surely-outside pixels whose chromaticity is nearer the surely-inside
  pixels' mean than the surely-outside pixels' mean start as probably inside.
- ``lab-reprieve-chroma``: CIELAB growth as shipped, with the chromaticity reprieve.

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


def chromaticity(rgb):
    s = rgb.sum(-1, keepdims=True) + EPS
    return rgb[..., :2] / s


def features(rgb, w, kind):
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0] * (255.0 / 100.0) * w + 128.0 * (1.0 - w)
    if kind == "lab":
        px = np.stack([lightness, lab[..., 1] + 128.0, lab[..., 2] + 128.0], -1)
    else:
        c = chromaticity(rgb) * 255.0 * 1.5
        px = np.stack([lightness, c[..., 0], c[..., 1]], -1)
    return np.ascontiguousarray(np.clip(px, 0, 255).round().astype(np.uint8))


def make(kind, reprieve, fixed_weight=None):
    def grow(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
        if fixed_weight is not None:
            lightness_weight = fixed_weight
        on_head = head.detach().cpu().numpy()
        core = inside.detach().cpu().numpy() & on_head
        if not core.any() or core.sum() == on_head.sum():
            return inside & head
        rgb = image.detach().cpu().float().clamp(0.0, 1.0).numpy()
        labels = np.full(core.shape, cv2.GC_PR_BGD, dtype=np.uint8)
        if probably_inside is not None:
            labels[probably_inside.detach().cpu().numpy() & on_head] = cv2.GC_PR_FGD
        interior = cv2.erode(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if interior.any():
            labels[core & ~interior] = cv2.GC_PR_FGD
            core = interior
        if surely_outside is not None:
            out = surely_outside.detach().cpu().numpy() & on_head
            if reprieve and out.any():
                c = chromaticity(rgb)
                mi, mo = c[core].mean(0), c[out].mean(0)
                given = (np.linalg.norm(c - mi, axis=-1) < np.linalg.norm(c - mo, axis=-1)) & out
                labels[given] = cv2.GC_PR_FGD
                out = out & ~given
            labels[out] = cv2.GC_BGD
        labels[core] = cv2.GC_FGD
        labels[~on_head] = cv2.GC_BGD
        pixels = features(rgb, lightness_weight, kind)
        bg, fg = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        cv2.grabCut(pixels, labels, None, bg, fg, 5, cv2.GC_INIT_WITH_MASK)
        grown = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)) & on_head
        return torch.from_numpy(grown).to(head.device)

    return grow


VARIANTS = {
    "lab": ("lab", False),  # the shipped growth, re-implemented (must match the default)
    "chroma": ("chroma", False),
    "chroma-reprieve": ("chroma", True),
    "lab-reprieve-chroma": ("lab", True),
    "chroma0-reprieve": ("chroma", True, 0.0),
    "chroma0": ("chroma", False, 0.0),
}

if __name__ == "__main__":
    import tyro

    R.grow_by_colour = make(*VARIANTS[sys.argv.pop(1)])
    tyro.cli(region_iou.RegionIoU).main()
