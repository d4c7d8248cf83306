"""What the jobs run on: a random Stable Diffusion 1.5, the benchmarked diffusion model, recon models and a synthetic
ray batch with one recon training step (also timed by ``benchmarks/bench_recon.py`` against nerfacto)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model
from transformers import CLIPTokenizer

from avatarstudio_ns.builtin.char_tokenizer import BOS_TOKEN, EOS_TOKEN, build_vocab, write_tokenizer
from avatarstudio_ns.builtin.small_model import (
    SmallModelConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    write_small_model,
)
from avatarstudio_ns.edit.trainer import inherit_fields
from avatarstudio_ns.guidance.loading import DiffusionModel, load_diffusion
from avatarstudio_ns.scripts.bench.settings import SD15_RANDOM, SuitePlan
from method_configs.edit import avatarstudio_edit, avatarstudio_edit_fast
from method_configs.recon import avatarstudio_recon, avatarstudio_recon_cpu


def sd15_sizes() -> SmallModelConfig:
    """Stable Diffusion 1.5's shapes: UNet (320, 640, 1280, 1280) x 2 layers, 8 heads, 768-d cross-attention;
    VAE (128, 256, 512, 512) x 2; a 12-layer 768-d CLIP text transformer; 512 px images, 64 px latents.

    Only the tokenizer's vocabulary is smaller than CLIP's (an embedding lookup: no compute difference).
    """
    return SmallModelConfig(
        resolution=512,
        vae_channels=(128, 256, 512, 512),
        vae_layers_per_block=2,
        unet_channels=(320, 640, 1280, 1280),
        unet_layers_per_block=2,
        attention_head_dim=8,
        norm_num_groups=32,
        text_hidden_size=768,
        text_layers=12,
        text_heads=12,
    )


def random_diffusion_model(cfg: SmallModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A randomly initialised model of the given sizes, built in memory on ``device``.

    Writing Stable Diffusion 1.5's 4 GB of random weights to disk only to read them back would dominate the
    benchmark's set-up; only the tokenizer goes through a temporary folder.
    """
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = write_tokenizer(Path(tmp) / "tokenizer", cfg.words, cfg.max_length)
        tokenizer = CLIPTokenizer.from_pretrained(Path(tmp) / "tokenizer")
    vocab, _ = build_vocab(cfg.words)
    with torch.random.fork_rng(devices=[]), torch.device(device):  # initialise on the device: much faster on CUDA
        torch.manual_seed(seed)
        modules = {
            "unet": build_unet(cfg),
            "vae": build_vae(cfg),
            "text_encoder": build_text_encoder(cfg, vocab_size, vocab[BOS_TOKEN], vocab[EOS_TOKEN]),
        }
    for module in modules.values():
        module.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return DiffusionModel(
        **modules,
        tokenizer=tokenizer,
        scheduler=build_scheduler(cfg),
        prediction_type=cfg.prediction_type,
        source=f"random weights, {cfg.resolution} px",
        device=device,
        dtype=dtype,
    )


def load_bench_model(plan: SuitePlan, workdir: Path) -> DiffusionModel:
    """The plan's diffusion model: the built-in one, a folder, SD 1.5 shapes, or a freshly written small one."""
    device = torch.device(plan.device)
    if plan.model == SD15_RANDOM:
        dtype = torch.float16 if plan.dtype == "fp16" else torch.float32
        return random_diffusion_model(sd15_sizes(), device, dtype, plan.seed)
    if plan.model == "small":
        folder = write_small_model(workdir / "small_model", plan.small_model, seed=plan.seed)
        return load_diffusion(str(folder), device, dtype=plan.dtype)
    return load_diffusion(plan.model, device, dtype=plan.dtype)


def recon_spec(preset: str):
    """The method specification of a recon preset (cpu or gpu)."""
    return avatarstudio_recon_cpu if preset == "cpu" else avatarstudio_recon


def preset_rays(preset: str) -> int:
    """Rays per training batch of a recon preset."""
    return recon_spec(preset).config.pipeline.datamanager.train_num_rays_per_batch


def build_recon_model(preset: str, device: torch.device):
    """The recon model of a preset in a [-1, 1]^3 box."""
    return _setup(recon_spec(preset).config.pipeline.model, device)


def build_edit_model(preset: str, device: torch.device):
    """The edit preset's model on a recon of ``preset`` (avatarstudio-edit-fast on the cpu recon, avatarstudio-edit on
    the gpu one), its sizes inherited from the recon as an edit inherits them."""
    edit = avatarstudio_edit_fast if preset == "cpu" else avatarstudio_edit
    config = copy.deepcopy(edit.config.pipeline.model)
    inherit_fields(config, recon_spec(preset).config.pipeline.model)
    return _setup(config, device)


def _setup(config, device: torch.device) -> Model:
    """A model of ``config`` in a [-1, 1]^3 box, 64 training images over 30 timesteps, in training mode."""
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = config.setup(scene_box=scene_box, num_train_data=64, metadata={"num_timesteps": 30})
    return model.to(device).train()


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
