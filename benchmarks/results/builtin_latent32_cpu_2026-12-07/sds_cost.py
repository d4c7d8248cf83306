"""The edit's per-step cost of the diffusion model at 64 px, for the shipped sizes and two 32x32-latent candidates:
a UNet forward at batch 2 (the guidance pair, no gradient) and a VAE encode forward + backward at batch 1. One thread;
the candidates are timed in turns (7 rounds of 10 calls each) and the median round is reported, so that load from
other work falls on all of them alike."""

import dataclasses
import statistics
import time

import torch

from avatarstudio_ns.builtin.small_model import build_unet, build_vae
from avatarstudio_ns.builtin.train import builtin_sizes

torch.set_num_threads(1)
latent32 = dict(vae_channels=(16, 32), unet_attention=(False, True, True, True, False))
candidates = {
    "v4 (16x16x8)": builtin_sizes(),
    "32x32, unet 16-32-64-128-128": dataclasses.replace(
        builtin_sizes(), unet_channels=(16, 32, 64, 128, 128), **latent32
    ),
    "32x32, unet 32-32-64-128-128": dataclasses.replace(
        builtin_sizes(), unet_channels=(32, 32, 64, 128, 128), **latent32
    ),
}
calls = {}
for name, cfg in candidates.items():
    unet, vae = build_unet(cfg).eval(), build_vae(cfg)
    side = cfg.resolution // cfg.vae_scale_factor
    x = torch.randn(2, cfg.latent_channels, side, side)
    text = torch.randn(2, 77, cfg.text_hidden_size)
    t = torch.tensor([500, 500])
    image = torch.rand(1, 3, 64, 64, requires_grad=True)

    def unet_forward(unet=unet, x=x, t=t, text=text):
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=text)

    def vae_encode_backward(vae=vae, image=image):
        vae.encode(image * 2 - 1).latent_dist.mean.sum().backward()

    calls[name] = {"unet forward, batch 2": unet_forward, "VAE encode + backward, batch 1": vae_encode_backward}
    print(f"{name}: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters, latents {side}x{side}")
rounds = {(name, label): [] for name, fns in calls.items() for label in fns}
for _ in range(7):
    for (name, label), times in rounds.items():
        fn = calls[name][label]
        fn()
        start = time.perf_counter()
        for _ in range(10):
            fn()
        times.append((time.perf_counter() - start) / 10 * 1000)
for (name, label), times in rounds.items():
    print(f"{name}: {label} {statistics.median(times):.1f} ms")
