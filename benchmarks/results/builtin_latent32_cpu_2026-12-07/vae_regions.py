"""The autoencoders' round trip per region, probe-free: the shipped model's (16x16x8 latents) against a 32x32 one.

python benchmarks/results/builtin_latent32_cpu_2026-12-07/vae_regions.py OUT.json NAME=VAE_FOLDER ...

On the evaluation's real renders (160 new identities x 4 views, any attribute combination; rendered into
outputs/latent32/data_eval on first use): the mean absolute error (0-255) per region, and the iris colour read at each
frontal render's own iris pixels (>= 8 of them) given the nearest class mean of the real renders' irises (the
accuracy the round trip leaves for an eye colour, without a probe's own errors). One thread.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from avatarstudio_ns.builtin.head_images import TABLES, build_dataset
from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, evaluation_renders
from avatarstudio_ns.builtin.train import TrainBuiltinConfig
from avatarstudio_ns.data import labels as L

torch.set_num_threads(1)
out = Path(sys.argv[1])
vaes = dict(arg.split("=", 1) for arg in sys.argv[2:])
real = build_dataset(evaluation_renders(TrainBuiltinConfig().data, EvalConfig()), Path("outputs/latent32/data_eval"))
images = real.images()  # (n, 3, 64, 64) in [-1, 1]
labels = torch.from_numpy(real.labels)
iris = labels == L.IRIS
frontal = iris.sum((1, 2)).numpy() >= 8
eyes = real.attrs["eyes"]
regions = {"skin": L.SKIN, "hair": L.HAIR, "brows": L.BROWS, "sclera": L.SCLERA, "iris": L.IRIS, "lips": L.LIPS}


def iris_colour(x: torch.Tensor) -> np.ndarray:
    """(n, 3) mean colour over each image's iris pixels, in [0, 1]."""
    m = iris[:, None].float()
    return (((x.clamp(-1, 1) + 1) / 2 * m).sum((2, 3)) / m.sum((2, 3)).clamp(min=1)).numpy()


real_iris = iris_colour(images)
means = np.stack([real_iris[frontal & (eyes == k)].mean(0) for k in range(len(TABLES["eyes"]))])


def iris_accuracy(x: torch.Tensor) -> float:
    colours = iris_colour(x)[frontal]
    return float((np.argmin(((colours[:, None] - means[None]) ** 2).sum(-1), 1) == eyes[frontal]).mean())


report = {"renders": len(images), "frontal": int(frontal.sum()), "real": {"iris_accuracy": iris_accuracy(images)}}
for name, folder in vaes.items():
    vae = AutoencoderKL.from_pretrained(folder).eval()
    with torch.no_grad():
        decoded = torch.cat([vae.decode(vae.encode(x).latent_dist.mean).sample for x in images.split(64)])
    error = (decoded.clamp(-1, 1) - images).abs().mean(1) * 127.5  # (n, h, w), 0-255
    report[name] = {
        "folder": folder,
        "latent": list(vae.encode(images[:1]).latent_dist.mean.shape[1:]),
        "mean_abs_error": {region: float(error[labels == label].mean()) for region, label in regions.items()},
        "iris_accuracy": iris_accuracy(decoded),
    }
    print(name, json.dumps(report[name]), flush=True)
out.write_text(json.dumps(report, indent=2) + "\n")
