"""Record driver, a growth variant not kept: the head's pixels whose colour (k-means centres, CIELAB with the
configured lightness weight) is nearer the surely-inside pixels' than the surely-outside pixels' also start as
probably inside. Otherwise benchmarks/region_iou.py unchanged (same options).

    python variant_b.py --recon <recon config.yml> --output out.json --prompts "photo of a person with blue hair" ...
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


def grow(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
    if surely_outside is not None:
        lab = _lab(image, lightness_weight)
        h = head.cpu().numpy()
        i = inside.cpu().numpy() & h
        o = surely_outside.cpu().numpy() & h
        if i.sum() >= 3 and o.sum() >= 3:
            ci, co = _centres(lab[i]), _centres(lab[o])
            px = lab.reshape(-1, 3)
            di = np.linalg.norm(px[:, None] - ci[None], axis=-1).min(1)
            do = np.linalg.norm(px[:, None] - co[None], axis=-1).min(1)
            nearer = torch.from_numpy((di < do).reshape(h.shape) & h & ~o).to(head.device)
            probably_inside = nearer if probably_inside is None else (probably_inside | nearer)
    return _grow(image, inside, head, probably_inside, lightness_weight, surely_outside)


R.grow_by_colour = grow
if __name__ == "__main__":
    import tyro

    tyro.cli(region_iou.RegionIoU).main()
