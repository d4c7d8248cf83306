"""Record driver, a growth variant not kept: of the least relevant pixels (surely outside), those whose colour
(CIELAB with the configured lightness weight) is nearer the surely-inside pixels' mean than the surely-outside
pixels' mean start as probably inside instead. Otherwise benchmarks/region_iou.py unchanged (same options).

    python variant_c.py --recon <recon config.yml> --output out.json --prompts "photo of a person with blue hair" ...
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


def grow(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
    if surely_outside is not None:
        lab = _lab(image, lightness_weight)
        h = head.cpu().numpy()
        i = inside.cpu().numpy() & h
        o = surely_outside.cpu().numpy() & h
        if i.any() and o.any():
            mi, mo = lab[i].mean(0), lab[o].mean(0)
            nearer = (np.linalg.norm(lab - mi, axis=-1) < np.linalg.norm(lab - mo, axis=-1)) & o
            nearer_t = torch.from_numpy(nearer).to(head.device)
            surely_outside = surely_outside & ~nearer_t
            probably_inside = nearer_t if probably_inside is None else (probably_inside | nearer_t)
    return _grow(image, inside, head, probably_inside, lightness_weight, surely_outside)


R.grow_by_colour = grow
if __name__ == "__main__":
    import tyro

    tyro.cli(region_iou.RegionIoU).main()
