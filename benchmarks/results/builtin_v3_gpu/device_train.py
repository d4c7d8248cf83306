"""Device run: train built-in model variants in parallel on one GPU within a wall-clock budget, export each.

Usage: python3 device_train.py DATA_DIR OUT_DIR BUDGET_MIN [tiny]
"""

import dataclasses
import json
import multiprocessing as mp
import shutil
import sys
import tarfile
import time
import traceback
from pathlib import Path

import torch

T0 = time.monotonic()


def variants(tiny: bool) -> dict:
    from avatarstudio_ns.builtin.train import TrainBuiltinConfig, builtin_sizes

    base = TrainBuiltinConfig()
    # builtin_sizes() had 4 latent channels when this ran; stated so that the record still makes both variants.
    model = dataclasses.replace(
        builtin_sizes(), latent_channels=4, prediction_type="v_prediction", zero_terminal_snr=True
    )
    vae = dataclasses.replace(base.vae, steps=8000, region_balance=0.75, log_every=500, checkpoint_every=1000)
    unet = dataclasses.replace(base.unet, batch_size=128, log_every=500, checkpoint_every=2000)
    if tiny:
        model = dataclasses.replace(model, vae_channels=(8, 16, 16), unet_channels=(16, 32, 32, 32))
        vae = dataclasses.replace(vae, steps=30, full_image_steps=10, log_every=10, checkpoint_every=10)
        unet = dataclasses.replace(unet, batch_size=8, log_every=10, checkpoint_every=10)
    out = {}
    out["c4"] = dict(model=model, vae=vae, unet=unet)
    out["c8"] = dict(model=dataclasses.replace(model, latent_channels=8), vae=vae, unet=unet)
    return out


def vae_step_seconds(parts: dict, data_dir: str, device: str) -> float:
    """Seconds per crop step of this VAE on this device (the whole-image steps cost about 4x)."""
    from avatarstudio_ns.builtin.small_model import build_vae

    vae = build_vae(parts["model"]).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    x = torch.randn(parts["vae"].batch_size, 3, parts["vae"].crop, parts["vae"].crop, device=device)
    for i in range(23):
        if i == 3:
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.monotonic()
        loss = (vae(x).sample - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.monotonic() - t) / 20


def run_variant(name: str, parts: dict, data_dir: str, out_dir: str, deadline: float, device: str) -> None:
    from rich.console import Console

    from avatarstudio_ns.builtin.train import TrainBuiltinConfig, train_builtin

    log = open(Path(out_dir) / f"{name}.log", "w")
    console = Console(file=log, width=140, force_terminal=False)
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        work = Path("/tmp/work") / name
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "data_train").exists():
            (work / "data_train").symlink_to(Path(data_dir).resolve())
        model_dir = Path("/tmp/models") / name
        step = vae_step_seconds(parts, data_dir, device)
        vae_cfg = parts["vae"]
        budget = deadline - time.monotonic()
        steps = min(vae_cfg.steps, int(0.35 * budget / step - 3 * vae_cfg.full_image_steps) // 500 * 500)
        console.log(f"[{name}] VAE {step * 1000:.1f} ms/step; {steps} steps of {vae_cfg.steps} fit 35 % of the time")
        if steps < vae_cfg.steps:
            parts = {**parts, "vae": dataclasses.replace(vae_cfg, steps=max(steps, 2 * vae_cfg.full_image_steps))}
        cfg = TrainBuiltinConfig(work_dir=work, output_dir=model_dir, device=device, **parts)
        # First pass: renders, VAE, latents and a UNet of 0 steps; then the UNet gets the time that is left.
        first = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, steps=0))
        t = time.monotonic()
        train_builtin(first, console)
        console.log(f"[{name}] VAE + latents: {(time.monotonic() - t) / 60:.2f} min")
        left = (deadline - time.monotonic()) / 60.0
        console.log(f"[{name}] UNet budget {left:.2f} min")
        second = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, steps=200_000, max_minutes=left))
        train_builtin(second, console)
        facts = json.loads((model_dir / "training.json").read_text())
        console.log(f"[{name}] done: {facts['unet_steps']} UNet steps")
        with tarfile.open(Path(out_dir) / f"{name}.tar", "w") as tar:
            tar.add(model_dir, arcname=name)
    except Exception:
        log.write(traceback.format_exc())
    finally:
        log.close()


def main() -> None:
    data_dir, out_dir, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tiny = len(sys.argv) > 4 and sys.argv[4] == "tiny"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    print(f"device {device}: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    deadline = T0 + 60.0 * budget
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=run_variant, args=(name, parts, data_dir, out_dir, deadline, device))
        for name, parts in variants(tiny).items()
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    for log in sorted(Path(out_dir).glob("*.log")):
        print(f"==== {log.name}")
        lines = log.read_text().splitlines()
        print("\n".join(lines[-25:]))
    print(f"total {(time.monotonic() - T0) / 60:.2f} min")
    shutil.rmtree("/tmp/models", ignore_errors=True)


if __name__ == "__main__":
    main()
