"""What the recon renders at timesteps training never saw, scored: VHAP's division of a sequence, on a synth capture.

VHAP's exports put the last ~30 % of a sequence's timesteps in the test split, at every camera; training sees only
the earlier ones. The recon gives such a frame the code of its nearest trained frame (``FrameCodes``), so it holds
the last trained expression. This renders a synth capture divided that way (``avatarstudio synth --test-frames``),
trains the CPU recon on it as the demo does, and prints PSNR / SSIM per timestep: the held-out camera at trained
timesteps (val) beside every camera at unseen ones (test). Writes the figures as JSON.

    python benchmarks/unseen_frames.py --output outputs/unseen_frames     # resumes a finished or partial run
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from nerfstudio.utils.eval_utils import eval_setup
from rich.console import Console
from rich.table import Table

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.synth import CaptureConfig, render_capture
from avatarstudio_ns.recon.image_metrics import psnr, ssim
from avatarstudio_ns.scripts.runs import train_run
from method_configs.recon import avatarstudio_recon_cpu

CONSOLE = Console()


@dataclass
class UnseenFrames:
    """Train the CPU recon on a capture whose last frames are held out and score every timestep."""

    output: Path = Path("outputs/unseen_frames")
    """Folder of the capture, the run and the figures (unseen_frames.json)."""
    num_cameras: int = 8
    """Cameras of the synthetic rig (the demo's)."""
    num_frames: int = 16
    """Frames of the performance (the demo's)."""
    test_frames: int = 5
    """The last frames, held out of training (5 of 16 is VHAP's ~30 %)."""
    resolution: int = 64
    """Image side, pixels (the demo's)."""
    recon_steps: int = 1500
    """Recon iterations (the demo's)."""
    seed: int = 0
    """Seed of the capture and the run."""


def score_split(config_path: Path, split: str) -> dict[int, list[tuple[float, float]]]:
    """PSNR and SSIM of every image of ``split`` ("val" or "test"), grouped by timestep."""
    _, pipeline, _, _ = eval_setup(config_path, test_mode=split)  # type: ignore[arg-type]
    dataset = pipeline.datamanager.eval_dataset
    num_timesteps = int(pipeline.model.frame_codes.num_timesteps)
    scores: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for index in range(len(dataset)):
        camera = dataset.cameras[index : index + 1]
        with torch.no_grad():
            rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"]
        target = dataset[index]["image"][..., :3].to(rgb)
        timestep = round(float(camera.times[0, 0]) * (num_timesteps - 1))  # time k / (T - 1) is frame k
        image = (rgb.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None])
        scores[timestep].append((float(psnr(rgb, target)), float(ssim(*image))))
    return scores


def main(args: UnseenFrames) -> dict:
    """Renders the capture and trains the recon (each unless done), then scores both splits."""
    start = time.monotonic()
    capture = args.output / "capture"
    if not (capture / "transforms_train.json").exists():
        render_capture(
            CaptureConfig(
                output=capture,
                num_cameras=args.num_cameras,
                num_frames=args.num_frames,
                test_frames=args.test_frames,
                resolution=args.resolution,
                seed=args.seed,
            )
        )
    recon = copy.deepcopy(avatarstudio_recon_cpu.config)
    recon.machine.seed = args.seed
    run = train_run(recon, capture, args.output, args.recon_steps, name="unseen_frames")
    config_path = run / "config.yml"

    trained = args.num_frames - args.test_frames
    table = Table(title=f"Recon at trained and unseen timesteps (trained: 0..{trained - 1})")
    for column in ("timestep", "split", "images", "PSNR (dB)", "SSIM"):
        table.add_column(column)
    rows = []
    for split in ("val", "test"):
        for timestep, values in sorted(score_split(config_path, split).items()):
            mean_psnr = sum(v[0] for v in values) / len(values)
            mean_ssim = sum(v[1] for v in values) / len(values)
            rows.append({"timestep": timestep, "split": split, "images": len(values)} | {"psnr": mean_psnr})
            rows[-1]["ssim"] = mean_ssim
            table.add_row(str(timestep), split, str(len(values)), f"{mean_psnr:.2f}", f"{mean_ssim:.3f}")
    CONSOLE.print(table)

    def mean(split: str, key: str) -> float:
        chosen = [r[key] for r in rows if r["split"] == split]
        return sum(chosen) / len(chosen)

    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "trained_timesteps": trained,
        "val_mean_psnr": mean("val", "psnr"),
        "test_mean_psnr": mean("test", "psnr"),
        "rows": rows,
        "minutes": (time.monotonic() - start) / 60,
    }
    CONSOLE.print(
        f"Mean PSNR: {summary['val_mean_psnr']:.2f} dB at trained timesteps (held-out camera), "
        f"{summary['test_mean_psnr']:.2f} dB at unseen ones (every camera)."
    )
    atomic_write_text(args.output / "unseen_frames.json", json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main(tyro.cli(UnseenFrames))
