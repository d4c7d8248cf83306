import numpy as np
import torch
from PIL import Image

from avatarstudio_ns.builtin.probe import AttributeProbe
from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth.render import label_palette

torch.set_num_threads(1)
probe = AttributeProbe(16, 64)
probe.load_state_dict(torch.load("outputs/diag_eyes/probe.pt"))
probe.eval()
s = torch.load("outputs/diag_eyes/samples_builtin_vis_model.pt")[[0, 1, 2]]
x = s.flatten(0, 1)
with torch.no_grad():
    lab = probe(x)["labels"].argmax(1)
# The synth's preview colours, with the sclera yellow so that it stands out from the white backdrop.
palette = label_palette().copy()
palette[L.SCLERA] = (255, 255, 0)
img = ((x.clamp(-1, 1) + 1) * 127.5).byte().permute(0, 2, 3, 1).numpy()
seg = palette[lab.numpy()]
rows = []
for j in range(3):
    rows.append(np.concatenate([img[j * 8 + k] for k in range(8)], 1))
    rows.append(np.concatenate([seg[j * 8 + k] for k in range(8)], 1))
Image.fromarray(np.concatenate(rows, 0)).resize((8 * 64 * 3, 6 * 64 * 3), Image.NEAREST).save(
    "benchmarks/results/builtin_probe_eyes_cpu_2026-12-06/samples_and_probe_labels.png"
)
