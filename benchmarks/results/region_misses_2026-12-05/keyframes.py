"""Record driver: each keyframe's colour growth in the region fit (rows: keyframes; columns: image, surely inside,
probably inside, surely outside, grown), by wrapping grow_by_colour; also prints the region's IoU.

    python keyframes.py <recon config.yml> "<prompt>" picture.png
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/, for region_iou
import region_iou

from avatarstudio_ns.edit import region as R

captured = []
_grow = R.grow_by_colour


def grow(image, inside, head, probably_inside=None, lightness_weight=1.0, surely_outside=None):
    out = _grow(image, inside, head, probably_inside, lightness_weight, surely_outside)
    captured.append(
        [image.cpu().numpy()]
        + [
            m.cpu().numpy().astype(float) if m is not None else np.zeros(head.shape)
            for m in (inside, probably_inside, surely_outside, out)
        ]
    )
    return out


R.grow_by_colour = grow
cmd = region_iou.RegionIoU(
    recon=Path(sys.argv[1]),
    prompts=(sys.argv[2],),
    output=Path(sys.argv[3]).with_suffix(".json"),
)
cmd.main()
rows = []
for c in captured:
    image, inside, prob, sure_out, grown = c
    head = image.sum(-1) < 2.9
    code = np.zeros(image.shape)
    code[head] = (0.4, 0.4, 0.4)
    code[prob > 0] = (1, 1, 0)
    code[sure_out > 0] = (1, 0, 0)
    code[inside > 0] = (0, 1, 0)
    code[~head] = 0
    g = np.zeros(image.shape)
    g[grown > 0] = (0, 0.8, 1)
    rows.append(np.concatenate([image, code, g], 1))
img = np.concatenate(rows, 0)
Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).resize(
    (img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST
).save(sys.argv[3])
