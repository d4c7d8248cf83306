"""Held-out metrics per timestep, to see that no frame of the performance is reconstructed far worse.

python -m avatarstudio_ns.scripts.per_frame_metrics --load-config outputs/.../config.yml [--output-path per_frame.json]
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from nerfstudio.pipelines.base_pipeline import Pipeline

from avatarstudio_ns.recon import image_metrics


@torch.no_grad()
def per_timestep_metrics(pipeline: Pipeline) -> dict[int, dict[str, float]]:
    """PSNR and SSIM of every eval image, averaged per timestep.

    Args:
        pipeline: a pipeline whose eval dataset carries ``timestep_indices`` in its metadata (the
            avatarstudio dataparser); without it every image counts as timestep 0.

    Returns:
        ``{timestep: {"psnr": ..., "ssim": ..., "num_images": ...}}``, sorted by timestep.
    """
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset  # type: ignore[attr-defined]
    timesteps = dataset.metadata.get("timestep_indices")
    was_training = model.training
    model.eval()
    sums: dict[int, dict[str, float]] = defaultdict(lambda: {"psnr": 0.0, "ssim": 0.0, "num_images": 0.0})
    for i in range(len(dataset)):
        camera = dataset.cameras[i : i + 1].to(model.device)
        batch = dataset[i]
        outputs = model.get_outputs_for_camera(camera)
        gt = model.renderer_rgb.blend_background(batch["image"].to(model.device))  # type: ignore[union-attr]
        pred = outputs["rgb"].clamp(0.0, 1.0)
        entry = sums[int(timesteps[i]) if timesteps is not None else 0]
        entry["psnr"] += float(image_metrics.psnr(pred, gt))
        entry["ssim"] += float(image_metrics.ssim(pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]))
        entry["num_images"] += 1
    model.train(was_training)
    return {
        t: {"psnr": v["psnr"] / v["num_images"], "ssim": v["ssim"] / v["num_images"], "num_images": v["num_images"]}
        for t, v in sorted(sums.items())
    }


@dataclass
class PerTimestepEval:
    """Evaluates a trained avatarstudio-recon model on its held-out images, per timestep."""

    load_config: Path
    """config.yml of the trained run."""
    split: Literal["val", "test"] = "test"
    """Which held-out split to evaluate (nerfstudio's test_mode)."""
    output_path: Path | None = None
    """Optional JSON file for the per-timestep figures."""

    def main(self) -> dict[int, dict[str, float]]:
        """Loads the run, evaluates it and prints one line per timestep plus the spread."""
        # heavy (eval_utils imports every method config of nerfstudio's registry, ~3 s): imported when the command
        # runs, so --help stays fast
        from nerfstudio.utils.eval_utils import eval_setup

        _, pipeline, _, step = eval_setup(self.load_config, test_mode=self.split)
        result = per_timestep_metrics(pipeline)
        for t, m in result.items():
            print(f"timestep {t:4d}: PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.4f}  ({int(m['num_images'])} images)")
        psnrs = [m["psnr"] for m in result.values()]
        print(f"step {step}: mean {sum(psnrs) / len(psnrs):.2f} dB, min {min(psnrs):.2f} dB, max {max(psnrs):.2f} dB")
        if self.output_path is not None:
            self.output_path.write_text(json.dumps({str(t): m for t, m in result.items()}, indent=2))
        return result


if __name__ == "__main__":
    tyro.cli(PerTimestepEval).main()
