"""Record driver: where an edit misses its colour. The fidelity hit inside and outside the edit's rendered region
(at the suite's views), what the missed pixels are classified as, and a picture (rows: views; columns: original,
edited, region, misses: green hit, red missed inside the region, blue missed outside).

    python misses.py <recon run folder> <edit run folder> picture.png
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    _fidelity_mask,
    collect_views,
    load_pipeline,
    pipeline_outputs,
    render_edit_region,
    render_images,
)
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET
from avatarstudio_ns.scripts.suite import _load_checkpoint, checkpoint_steps, render_sized

torch.set_num_threads(1)
recon, run, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
original = load_pipeline(recon / "config.yml")
views = render_sized(
    collect_views(*pipeline_outputs(original), EvalSettings(num_train_cameras=3, timestep_stride=24, clip_model=None))
)
edited = load_pipeline(run / "config.yml")
_load_checkpoint(edited, run, checkpoint_steps(run)[-1])
prompt = DEFAULT_PROMPT_SET.find(edited.model.config.prompt)
o = render_images(original.model, views.cameras)
e = render_images(edited.model, views.cameras)
region = render_edit_region(edited.model, views.cameras)
views = views.resized(*o.shape[1:3])
measured = _fidelity_mask(views, prompt, EvalSettings().fidelity_erosion)
colors = dict(prompt.palette())
name = prompt.target_name
names = list(colors)
table = np.array([colors[n] for n in names])
d = M.lit_distances(e[measured], table, views.shading[measured], views.specular[measured])
hit = d.argmin(1) == names.index(name)
inr = region[measured] > 0.5
print(
    f"{run.name}: hit {hit.mean():.3f}; in region {inr.mean():.3f} of target, hit there {hit[inr].mean():.3f}, "
    f"outside {hit[~inr].mean() if (~inr).any() else float('nan'):.3f}"
)
nearest = d.argmin(1)
for k in np.unique(nearest[~hit]):
    share, in_region = np.mean(nearest[~hit] == k), np.mean(inr[~hit][nearest[~hit] == k])
    print(f"   missed as {names[k]}: {share:.2f}  (in region {in_region:.2f})")
# picture: rows views; cols original, edited, region, miss map (red = miss in region, blue = miss outside)
hitmap = np.zeros(measured.shape, bool)
hitmap[measured] = hit
rows = []
for i in range(len(o)):
    miss = np.zeros(o.shape[1:3] + (3,))
    m, hi, r = measured[i], hitmap[i], region[i] > 0.5
    miss[m & ~hi & r] = (1, 0, 0)
    miss[m & ~hi & ~r] = (0, 0, 1)
    miss[m & hi] = (0, 1, 0)
    rows.append(np.concatenate([o[i], e[i], np.repeat(region[i][..., None], 3, -1), miss], 1))
img = np.concatenate(rows[:: max(1, len(rows) // 8)], 0)
Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).resize(
    (img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST
).save(out)
