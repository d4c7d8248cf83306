"""Record driver: two growth variants, not kept, that let colour give back pixels the relevance left out. Otherwise
benchmarks/region_iou.py unchanged (same options after the variant's name).

- ``nearer-inside``: the head's pixels whose colour (three k-means centres each, CIELAB with the configured lightness
  weight) is nearer the surely-inside pixels' than the surely-outside pixels' also start as probably inside.
- ``reprieve``: of the least relevant pixels (surely outside), those whose colour is nearer the surely-inside pixels'
  mean than the surely-outside pixels' mean start as probably inside instead.

    python growth_variants.py nearer-inside --recon <recon config.yml> --output out.json \
        --prompts "photo of a person with blue hair" ...
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/, for region_iou
import region_iou

from avatarstudio_ns.edit import region as R

_grow = R.grow_by_colour


def _lab(image, w):
    rgb = image.detach().cpu().float().clamp(0, 1).numpy()
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2Lab)
    return np.stack([lab[..., 0] * w, lab[..., 1], lab[..., 2]], -1)


def _centres(x, k=3):
    k = min(k, len(x))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.1)
    cv2.setRNGSeed(0)
    _, _, c = cv2.kmeans(x.astype(np.float32), k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    return c


def _nearer_inside(lab, h, i, o):
    """Head pixels nearer the inside's colours than the outside's, not surely outside; None when too few seeds."""
    if i.sum() < 3 or o.sum() < 3:
        return None
    ci, co = _centres(lab[i]), _centres(lab[o])
    px = lab.reshape(-1, 3)
    di = np.linalg.norm(px[:, None] - ci[None], axis=-1).min(1)
    do = np.linalg.norm(px[:, None] - co[None], axis=-1).min(1)
    return (di < do).reshape(h.shape) & h & ~o


def _reprieve(lab, h, i, o):
    """Surely-outside pixels nearer the inside's mean colour than the outside's; None without seeds."""
    if not (i.any() and o.any()):
        return None
    mi, mo = lab[i].mean(0), lab[o].mean(0)
    return (np.linalg.norm(lab - mi, axis=-1) < np.linalg.norm(lab - mo, axis=-1)) & o


VARIANTS = {"nearer-inside": _nearer_inside, "reprieve": _reprieve}


def variant_growth(name):
    """grow_by_colour with the named variant's pixels made probably inside (and no longer surely outside)."""
    pick = VARIANTS[name]

    def grow(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
        if surely_outside is not None:
            h = head.cpu().numpy()
            i, o = inside.cpu().numpy() & h, surely_outside.cpu().numpy() & h
            picked = pick(_lab(image, lightness_weight), h, i, o)
            if picked is not None:
                given = torch.from_numpy(picked).to(head.device)
                surely_outside = surely_outside & ~given
                probably_inside = given if probably_inside is None else (probably_inside | given)
        return _grow(image, inside, head, probably_inside, lightness_weight, surely_outside)

    return grow


if __name__ == "__main__":
    import tyro

    R.grow_by_colour = variant_growth(sys.argv.pop(1))
    tyro.cli(region_iou.RegionIoU).main()
