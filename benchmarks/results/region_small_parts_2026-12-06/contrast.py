"""The relevance of an edit prompt against references that name the same part in other colours, instead of "photo
of a person": does the part's own word, shared by both, cancel what the part word changes around the part?

    python contrast.py <recon config.yml> > contrast.log

Cuts and IoU as in small_parts.py (beside it); "mean of other colours" averages the relevance maps of the four.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from small_parts import LEVELS, cuts, load_views

from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.relevance import prompt_relevance

torch.set_num_threads(1)
model, views, rgb, acc = load_views(Path(sys.argv[1]), "builtin")
base = load_diffusion("builtin", "cpu")
head = (acc > 0.5).numpy()
h, w = rgb.shape[-2:]
labels = views.resized(h, w).labels
cases = {
    "green eyes": ["brown eyes", "blue eyes", "grey eyes", "hazel eyes"],
    "red lips": ["natural lips", "pink lips", "purple lips", "black lips"],
    "blue hair": ["brown hair", "red hair", "white hair", "black hair"],
    "pale skin": ["light skin", "dark skin", "tan skin", "brown skin"],
}
for part, refs in cases.items():
    prompt = f"photo of a person with {part}"
    target = M.region_mask(labels, DEFAULT_PROMPT_SET.find(prompt).regions)
    text = base.embed(prompt)
    maps = {}
    for ref in ["person"] + refs:
        r = "photo of a person" if ref == "person" else f"photo of a person with {ref}"
        maps[ref] = prompt_relevance(
            base,
            rgb,
            text,
            base.embed(r),
            LEVELS,
            8,
            generator=torch.Generator().manual_seed(0),
            foreground=acc,
            background=model.background_color,
        ).numpy()
        c = cuts(maps[ref], head, target, labels)
        print(part, "vs", ref, {k: round(v, 3) for k, v in c.items()}, flush=True)
    mean_others = np.mean([maps[r] for r in refs], 0)
    c = cuts(mean_others, head, target, labels)
    print(part, "vs mean of other colours (mean of |diff|)", {k: round(v, 3) for k, v in c.items()}, flush=True)
