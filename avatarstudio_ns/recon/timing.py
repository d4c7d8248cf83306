"""A synthetic ray batch and one training step: what the recon and edit cost measurements time.

Used by ``avatarstudio bench`` and ``benchmarks/bench_recon.py`` (recon against nerfacto), so both time the same work.
"""

from __future__ import annotations

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model


def make_batch(num_rays: int, device: str, seed: int) -> tuple[RayBundle, dict]:
    """Rays from cameras on a sphere of radius 4 looking at the box, with random colours and times."""
    gen = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(num_rays, 3, generator=gen), dim=-1) * 4.0
    targets = (torch.rand(num_rays, 3, generator=gen) * 2.0 - 1.0) * 0.8
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    bundle = RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((num_rays, 1), 1e-5),
        camera_indices=torch.randint(0, 64, (num_rays, 1), generator=gen),
        times=torch.rand(num_rays, 1, generator=gen),
    )
    bundle = AABBBoxCollider(SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])))(bundle)
    batch = {"image": torch.rand(num_rays, 3, generator=gen), "fg_mask": (torch.rand(num_rays, 1, generator=gen) > 0.5)}
    return bundle.to(device), {k: v.float().to(device) for k, v in batch.items()}


def train_step(model: Model, optimizer: torch.optim.Optimizer, bundle: RayBundle, batch: dict) -> None:
    """One forward + losses + backward + Adam step, as the Trainer runs it."""
    optimizer.zero_grad(set_to_none=True)
    outputs = model.get_outputs(bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
    loss.backward()  # type: ignore[union-attr]
    optimizer.step()
