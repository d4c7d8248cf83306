"""How much a small error in the latent shows in the decoded image, for version 4's autoencoder and the 32x32 one.

The UNet's sample is a latent with some error left in it; a decoder that turns a small latent error into coloured
speckle shows it in every sample. The first 64 real renders of the evaluation set (its first shard) are encoded,
Gaussian noise of a given size (in the UNet's units: latents times the scaling factor) is added, and the decoded
image is compared with the decoded clean latent (PSNR, and the share of pixels off by more than 0.1 in any channel).
Run from the repository root: python benchmarks/results/builtin_latent32_cpu_2026-12-07/decoder_noise.py
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from avatarstudio_ns.builtin.head_images import _load_shard

torch.manual_seed(0)
torch.set_num_threads(2)
renders = sorted(Path("outputs/latent32/work/data_eval").glob("shard_*.npz"))
images = torch.from_numpy(_load_shard(renders[0]).rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0
images = images[:64]
folders = {"version 4 (16x16x8)": "avatarstudio_ns/assets/builtin_model/vae", "32x32x8": "outputs/latent32/model/vae"}
print(f"{len(images)} real renders; sigma in scaled latent units")
print("| autoencoder | " + " | ".join(f"sigma {s}: PSNR dB / pixels off > 0.1" for s in (0.05, 0.1, 0.2)) + " |")
with torch.no_grad():
    for name, folder in folders.items():
        vae = AutoencoderKL.from_pretrained(folder).eval()
        scale = vae.config.scaling_factor
        z = vae.encode(images).latent_dist.mean * scale
        clean = vae.decode(z / scale).sample.clamp(-1, 1)
        cells = []
        for sigma in (0.05, 0.1, 0.2):
            noisy = vae.decode((z + sigma * torch.randn_like(z)) / scale).sample.clamp(-1, 1)
            diff = (noisy - clean) / 2  # in [0, 1] units
            psnr = 10 * torch.log10(1 / diff.square().mean())
            off = (diff.abs().amax(1) > 0.1).float().mean()
            cells.append(f"{psnr:.1f} / {off:.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
