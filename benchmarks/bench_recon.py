"""Seconds per training iteration of the avatarstudio recon model against nerfacto's field and samplers.

Both models get the same ray batch (clipped to the same scene box, so they sample the same intervals),
the same hash grid sizes and sample counts, and run forward + losses + backward + Adam on every
parameter. nerfacto is configured bounded (no scene contraction, uniform initial sampler, no camera
optimiser) to match; its LPIPS metric, which downloads AlexNet at construction, is replaced by a stub.
The difference between the two is the cost of the time-dependent parts: frame codes, the deformation
at every proposal and NeRF sample, and the code fed to the colour MLP.

    python benchmarks/bench_recon.py --preset cpu
    python benchmarks/bench_recon.py --preset gpu --num-rays 512
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Literal
from unittest import mock

import torch
import tyro
from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.base_model import Model
from nerfstudio.models.nerfacto import NerfactoModelConfig

from avatarstudio_ns.recon.model import AvatarReconModelConfig
from avatarstudio_ns.scripts.bench.models import make_batch, train_step
from method_configs.recon import avatarstudio_recon, avatarstudio_recon_cpu


@dataclass
class BenchArgs:
    """Benchmark settings."""

    preset: Literal["cpu", "gpu"] = "cpu"
    """Model sizes of avatarstudio-recon-cpu or avatarstudio-recon."""
    num_rays: int = 0
    """Rays per iteration; 0 uses the preset's batch size."""
    iters: int = 10
    """Timed iterations per model, alternating between the models."""
    warmup: int = 3
    """Untimed iterations per model first."""
    device: str = "cpu"
    """Torch device."""
    implementation: Literal["torch", "tcnn"] = "torch"
    """Hash grid implementation used by both models."""
    seed: int = 0
    """Random seed of the rays and the models."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default. On a shared machine 1 thread gives steadier figures."""


class _NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS so nerfacto builds without downloading AlexNet."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()


def build_models(args: BenchArgs) -> tuple[Model, Model, int]:
    """The recon model of the preset and a nerfacto model with matching sizes, plus the batch size."""
    spec = avatarstudio_recon_cpu if args.preset == "cpu" else avatarstudio_recon
    recon_cfg: AvatarReconModelConfig = spec.config.pipeline.model  # type: ignore[assignment]
    recon_cfg = AvatarReconModelConfig(**{**vars(recon_cfg), "implementation": args.implementation})
    num_rays = args.num_rays or spec.config.pipeline.datamanager.train_num_rays_per_batch
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))

    nerfacto_cfg = NerfactoModelConfig(
        implementation=args.implementation,
        disable_scene_contraction=True,
        proposal_initial_sampler="uniform",
        camera_optimizer=CameraOptimizerConfig(mode="off"),
        background_color="white",
        average_init_density=recon_cfg.average_init_density,
        num_levels=recon_cfg.num_levels,
        base_res=recon_cfg.base_res,
        max_res=recon_cfg.max_res,
        log2_hashmap_size=recon_cfg.log2_hashmap_size,
        features_per_level=recon_cfg.features_per_level,
        num_proposal_samples_per_ray=recon_cfg.num_proposal_samples_per_ray,
        num_nerf_samples_per_ray=recon_cfg.num_nerf_samples_per_ray,
        num_proposal_iterations=recon_cfg.num_proposal_iterations,
        proposal_net_args_list=recon_cfg.proposal_net_args_list,
    )
    torch.manual_seed(args.seed)
    with mock.patch("torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity", _NoLPIPS):
        nerfacto = nerfacto_cfg.setup(scene_box=scene_box, num_train_data=64)
    torch.manual_seed(args.seed)
    recon = recon_cfg.setup(scene_box=scene_box, num_train_data=64, metadata={"num_timesteps": 30})
    return recon.to(args.device), nerfacto.to(args.device), num_rays


def main(args: BenchArgs) -> dict[str, float]:
    """Runs the benchmark and prints seconds per iteration of both models and their ratio."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    recon, nerfacto, num_rays = build_models(args)
    bundle, batch = make_batch(num_rays, args.device, args.seed)
    models = {"avatarstudio-recon": recon, "nerfacto": nerfacto}
    optimizers = {
        name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3, eps=1e-15)
        for name, m in models.items()
    }
    for m in models.values():
        m.train()
        for _ in range(args.warmup):
            train_step(m, optimizers[[k for k, v in models.items() if v is m][0]], bundle, batch)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.iters):
        for name, m in models.items():  # alternate, so load from other processes hits both alike
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_step(m, optimizers[name], bundle, batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    # The minimum is the cost with the least interference from other processes; the median is shown too.
    result = {name: min(t) for name, t in times.items()}
    result["ratio"] = result["avatarstudio-recon"] / result["nerfacto"]
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"preset={args.preset} rays={num_rays} device={args.device} impl={args.implementation} "
        f"threads={torch.get_num_threads()} iters={args.iters}"
    )
    for name in models:
        print(f"{name:<19}: {result[name]:.4f} s/iter (min), {medians[name]:.4f} s/iter (median)")
    median_ratio = medians["avatarstudio-recon"] / medians["nerfacto"]
    print(f"ratio              : {result['ratio']:.2f}x (min), {median_ratio:.2f}x (median)")
    return result


if __name__ == "__main__":
    main(tyro.cli(BenchArgs))
