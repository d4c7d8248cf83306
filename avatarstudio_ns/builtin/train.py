"""Train the built-in text-to-image model of synthetic heads and write it in the diffusers folder layout.

Stages, each resumable from the work folder: render the captioned heads (cached shards), train the VAE,
encode the training set, train the UNet with the text encoder, write the model folder atomically. Re-running
the same command after an interruption continues where it stopped; after completion it only re-exports.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from transformers import CLIPTokenizer

from avatarstudio_ns.atomic import atomic_write_folder
from avatarstudio_ns.builtin.char_tokenizer import BOS_TOKEN, DEFAULT_WORDS, EOS_TOKEN, build_vocab, write_tokenizer
from avatarstudio_ns.builtin.head_images import HeadDatasetConfig, HeadImages, build_dataset
from avatarstudio_ns.builtin.small_model import (
    SmallModelConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    model_index,
)
from avatarstudio_ns.builtin.unet_stage import UnetStageConfig, train_unet
from avatarstudio_ns.builtin.vae_stage import VaeStageConfig, encode_latents, train_vae
from avatarstudio_ns.data.synth import EYE_COLORS, HAIR_COLORS, HAIR_STYLES, LIP_COLORS, SKIN_TONES
from avatarstudio_ns.guidance.loading import builtin_model_dir
from avatarstudio_ns.threads import torch_threads


def _caption_words() -> tuple[str, ...]:
    """Every word the training captions use, so each is one token (unknown words still tokenise by character)."""
    names = [*HAIR_COLORS, *SKIN_TONES, *EYE_COLORS, *LIP_COLORS, *HAIR_STYLES, "short", "long", "and"]
    extra = [w for w in dict.fromkeys(names) if w not in DEFAULT_WORDS and w != "bob"]
    return (*DEFAULT_WORDS, *extra)


def builtin_sizes() -> SmallModelConfig:
    """Sizes of the shipped model: 64 px images, 8x8x4 latents (Stable Diffusion's 8x downsampling), ~28 MB."""
    return SmallModelConfig(
        resolution=64,
        vae_channels=(16, 32, 64, 64),
        vae_layers_per_block=1,
        latent_channels=4,
        unet_channels=(64, 128, 128),
        unet_layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=8,
        text_hidden_size=64,
        text_layers=2,
        text_heads=2,
        words=_caption_words(),
    )


@dataclass
class TrainBuiltinConfig:
    """Everything that defines a training run of the built-in model."""

    work_dir: Path = Path("outputs/builtin_work")
    """Cache of renders, checkpoints and stage outputs; re-running with the same folder resumes."""
    output_dir: Path = field(default_factory=builtin_model_dir)
    """Where the finished diffusers folder is written (replaced atomically)."""
    data: HeadDatasetConfig = field(default_factory=HeadDatasetConfig)
    """The training renders."""
    model: SmallModelConfig = field(default_factory=builtin_sizes)
    """Network sizes."""
    vae: VaeStageConfig = field(default_factory=VaeStageConfig)
    """Autoencoder training."""
    unet: UnetStageConfig = field(default_factory=UnetStageConfig)
    """UNet and text-encoder training."""
    seed: int = 0
    """Seed of weights, batches and noise (the renders have their own, ``data.seed``)."""
    threads: int = 1
    """Torch threads. One is the fastest on a small shared CPU, where extra threads spin-wait on busy cores."""


def export_model(
    cfg: TrainBuiltinConfig, unet, text_encoder, vae, scaling_factor: float, extra: dict | None = None
) -> Path:
    """Write the trained parts as a ``StableDiffusionPipeline`` folder at ``cfg.output_dir``, atomically.

    Args:
        cfg: The run (sizes and output folder).
        unet: Trained UNet.
        text_encoder: Trained text encoder.
        vae: Trained autoencoder.
        scaling_factor: Latent scaling factor, stored in the VAE config where diffusers reads it.
        extra: Facts about the run recorded in ``training.json`` next to the weights.
    """
    vae.register_to_config(scaling_factor=scaling_factor)

    def write(tmp: Path) -> None:
        write_tokenizer(tmp / "tokenizer", cfg.model.words, cfg.model.max_length)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        build_scheduler(cfg.model).save_pretrained(tmp / "scheduler")
        (tmp / "model_index.json").write_text(json.dumps(model_index(cfg.model), indent=2) + "\n")
        (tmp / "training.json").write_text(json.dumps(extra or {}, indent=2, default=str) + "\n")

    return atomic_write_folder(Path(cfg.output_dir), write)


def load_training_set(cfg: TrainBuiltinConfig, console: Console) -> HeadImages:
    """Render (or read from the cache) the training images."""
    t0 = time.monotonic()
    data = build_dataset(
        cfg.data,
        Path(cfg.work_dir) / "data_train",
        on_shard=lambda done, total: console.log(f"renders: shard {done}/{total}"),
    )
    console.log(f"{len(data)} training images ({(time.monotonic() - t0) / 60:.1f} min)")
    return data


def train_builtin(cfg: TrainBuiltinConfig, console: Console | None = None) -> Path:
    """Run every stage (each resumes from ``cfg.work_dir``) and write the model folder.

    Returns:
        The written model folder.
    """
    console = console or Console()
    with torch_threads(cfg.threads):
        return _train_builtin(cfg, console)


def _train_builtin(cfg: TrainBuiltinConfig, console: Console) -> Path:
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    data = load_training_set(cfg, console)
    images = data.images()
    vae = train_vae(images, cfg.model, cfg.vae, work, cfg.seed, console)
    latents = encode_latents(vae, images, work, console)
    del images
    console.log(f"latent scaling factor {latents['scaling_factor']:.4f}")

    write_tokenizer(work / "tokenizer", cfg.model.words, cfg.model.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    vocab, _ = build_vocab(cfg.model.words)
    torch.manual_seed(cfg.seed + 3)
    text_encoder = build_text_encoder(cfg.model, len(vocab), vocab[BOS_TOKEN], vocab[EOS_TOKEN])
    unet = build_unet(cfg.model)
    scheduler = build_scheduler(cfg.model)
    steps = train_unet(unet, text_encoder, tokenizer, scheduler, latents, data, cfg.unet, work, cfg.seed, console)

    facts = {
        "images": len(data),
        "unet_steps": steps,
        "unet_batch_size": cfg.unet.batch_size,
        "vae_steps": cfg.vae.steps,
        "latent_scaling_factor": latents["scaling_factor"],
        "heldout_pairs": [list(p) for p in cfg.data.heldout_pairs],
        "config": dataclasses.asdict(cfg),
    }
    out = export_model(cfg, unet, text_encoder, vae, float(latents["scaling_factor"]), facts)
    console.log(f"[green]Wrote {out}[/green] ({(time.monotonic() - t0) / 60:.1f} min this run)")
    return out
