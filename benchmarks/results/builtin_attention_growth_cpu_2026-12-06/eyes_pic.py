"""Held-out eye prompts' samples (rows) with the ensemble's labels below each. python eyes_pic.py NAME"""

import sys

import numpy as np
import torch
from PIL import Image

from avatarstudio_ns.builtin.head_images import TABLES
from avatarstudio_ns.builtin.probe import AttributeProbe, ProbeEnsemble
from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth.render import label_palette

torch.set_num_threads(1)
ps = []
for s in (0, 1, 2):
    p = AttributeProbe(16, 64)
    p.load_state_dict(torch.load(f"outputs/probes/probe_s{s}_b0.0_w0.0.pt"))
    ps.append(p.eval())
s = torch.load(f"outputs/probes/samples_{sys.argv[1]}.pt")[10:15]
x = s.flatten(0, 1)
ensemble = ProbeEnsemble(ps)
lab = ensemble.predict(x)
seg_l = ensemble.label_map(x)
palette = label_palette().copy()
palette[L.SCLERA] = (255, 255, 0)
img = ((x.clamp(-1, 1) + 1) * 127.5).byte().permute(0, 2, 3, 1).numpy()
seg = palette[seg_l.numpy()]
rows = []
for j in range(5):
    rows.append(np.concatenate([img[j * 8 + k] for k in range(8)], 1))
    rows.append(np.concatenate([seg[j * 8 + k] for k in range(8)], 1))
Image.fromarray(np.concatenate(rows, 0)).resize((8 * 64 * 3, 10 * 64 * 3), Image.NEAREST).save(
    f"outputs/probes/eyes_{sys.argv[1]}.png"
)
names = TABLES["eyes"]
print(
    [
        [
            names[v] if vis else "-"
            for v, vis in zip(
                lab["eyes"][j * 8 : (j + 1) * 8].tolist(),
                lab["visible_eyes"][j * 8 : (j + 1) * 8].tolist(),
                strict=True,
            )
        ]
        for j in range(5)
    ]
)
