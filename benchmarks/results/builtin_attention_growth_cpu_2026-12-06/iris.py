"""Where does an iris colour get lost? Probe-free: colours read at the renders' own iris pixels.

python outputs/probes/iris.py MODEL_DIR OUT.json [STRENGTHS...]

1. Real eval renders: mean lit iris colour per eye colour (the class means every later colour is compared with).
2. The VAE round trip of the same renders: iris colour and its nearest class mean.
3. SDEdit through the model at a few strengths: each frontal eval render (irises >= 8 px) is noised to strength s and
   denoised with the caption of its hair and an eye colour (its own, and each other one); the iris pixels of the
   render (the face moves little at low strength) are read and given the nearest class mean.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

from avatarstudio_ns.builtin.head_images import TABLES, build_dataset, describe
from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, _vae_round_trip, evaluation_renders
from avatarstudio_ns.builtin.train import TrainBuiltinConfig
from avatarstudio_ns.data.labels import IRIS

torch.set_num_threads(1)
model = Path(sys.argv[1])
out = Path(sys.argv[2])
strengths = [float(s) for s in sys.argv[3:]] or [0.3, 0.5, 0.7, 0.9]
cfg = TrainBuiltinConfig().data
real = build_dataset(evaluation_renders(cfg, EvalConfig()), Path("outputs/builtin_parts2/data_eval"))
images = real.images()  # (n, 3, 64, 64) in [-1, 1]
iris = torch.from_numpy(real.labels == IRIS)
eyes = real.attrs["eyes"]
names = TABLES["eyes"]


def iris_colour(x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(n, 3) mean colour over each image's mask, in [0, 1]."""
    m = mask[:, None].float()
    return (((x.clamp(-1, 1) + 1) / 2 * m).sum((2, 3)) / m.sum((2, 3)).clamp(min=1)).numpy()


frontal = iris.sum((1, 2)).numpy() >= 8
real_col = iris_colour(images, iris)
means = np.stack([real_col[frontal & (eyes == k)].mean(0) for k in range(len(names))])


def nearest(c: np.ndarray) -> np.ndarray:
    return np.argmin(((c[:, None] - means[None]) ** 2).sum(-1), 1)


report = {"class_means": {n: means[k].round(3).tolist() for k, n in enumerate(names)}, "frontal": int(frontal.sum())}


def confusion(cols: np.ndarray, truth: np.ndarray) -> dict:
    pred = nearest(cols)
    return {
        n: {m: int(((truth == k) & (pred == j)).sum()) for j, m in enumerate(names)} for k, n in enumerate(names)
    } | {"accuracy": float((pred == truth).mean())}


report["real"] = confusion(real_col[frontal], eyes[frontal])
rt = _vae_round_trip(model, images)
report["vae_round_trip"] = confusion(iris_colour(rt, iris)[frontal], eyes[frontal])
print(json.dumps({k: report[k] for k in ("class_means", "real", "vae_round_trip")}, indent=None), flush=True)

pipe = StableDiffusionImg2ImgPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
idx = np.flatnonzero(frontal)[:40]
hair = [TABLES["hair"][h] for h in real.attrs["hair"][idx]]
x = images[idx]
report["sdedit"] = {}
for s in strengths:
    per = {}
    for k, target in enumerate(names):
        gen = torch.Generator().manual_seed(0)
        prompts = [describe({"hair": h, "eyes": target}) for h in hair]
        y = (
            pipe(
                prompts,
                image=(x + 1) / 2,
                strength=s,
                num_inference_steps=50,
                guidance_scale=7.5,
                generator=gen,
                output_type="pt",
            ).images
            * 2
            - 1
        )
        pred = nearest(iris_colour(y, iris[idx]))
        own = eyes[idx] == k
        per[target] = {
            "from_same": float((pred[own] == k).mean()) if own.any() else None,
            "from_other": float((pred[~own] == k).mean()),
            "read_as": {m: int((pred == j).sum()) for j, m in enumerate(names)},
        }
    report["sdedit"][str(s)] = per
    print(s, json.dumps(per), flush=True)
out.write_text(json.dumps(report, indent=1))
