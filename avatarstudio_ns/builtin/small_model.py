"""Write a small text-to-image latent diffusion model in the standard diffusers folder layout.

The folder has exactly Stable Diffusion's layout (``model_index.json`` for ``StableDiffusionPipeline``,
``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, safetensors weights), so the same
loading code reads it and ``StableDiffusionPipeline.from_pretrained(folder)`` works. Weights are random: the
tests use a tiny one, and the built-in model is one of these trained on synthetic heads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from avatarstudio_ns.atomic import atomic_write_folder
from avatarstudio_ns.builtin.char_tokenizer import BOS_TOKEN, DEFAULT_WORDS, EOS_TOKEN, build_vocab, write_tokenizer


@dataclass
class SmallModelConfig:
    """Sizes of a small Stable-Diffusion-layout model."""

    resolution: int = 64
    """Image side in pixels the model works at."""
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    """What the UNet predicts (written into the scheduler config, as diffusers does)."""
    zero_terminal_snr: bool = False
    """Rescale the betas so that the last timestep is pure noise (Lin et al. 2024; diffusers'
    ``rescale_betas_zero_snr``), sampled with "trailing" timesteps so that sampling starts there. Stable Diffusion's
    schedule leaves 7 % of the image in its noisiest latent: a model trained on it reads the layout from that
    remnant, and pure noise (where sampling starts) then reads as a head of one colour, seen from the side or
    behind (docs/builtin_model.md). Needs ``v_prediction``: the noise is not predictable from pure noise."""
    vae_channels: tuple[int, ...] = (32, 64, 64)
    """VAE block widths; the latent is ``2 ** (len - 1)`` times smaller than the image."""
    vae_layers_per_block: int = 1
    """ResNet layers per VAE block."""
    latent_channels: int = 4
    """Latent channels (Stable Diffusion: 4)."""
    vae_scaling_factor: float = 0.18215
    """Factor the pipeline multiplies VAE latents by (Stable Diffusion 1.x: 0.18215)."""
    unet_channels: tuple[int, ...] = (32, 64, 64)
    """UNet block widths, from the latent's resolution down."""
    unet_attention: tuple[bool, ...] | None = None
    """Which UNet blocks (in ``unet_channels`` order, mirrored on the way up) have a cross-attention transformer;
    None: every block but the last, as Stable Diffusion. The middle block always has one."""
    unet_layers_per_block: int = 1
    """ResNet layers per UNet block."""
    time_embedding_dim: int | None = None
    """Width of the UNet's timestep embedding; None: four times its first block's width, as Stable Diffusion. A UNet
    grown by a finer level in front of a saved one (``--unet.init-from``) keeps the saved one's width here, so that
    every block's timestep projection carries over."""
    attention_head_dim: int = 8
    """Channels per attention head."""
    norm_num_groups: int = 8
    """GroupNorm groups (must divide every channel width)."""
    text_hidden_size: int = 64
    """Text encoder width, also the UNet's cross-attention width."""
    text_layers: int = 2
    """Text encoder transformer layers."""
    text_heads: int = 2
    """Text encoder attention heads."""
    max_length: int = 77
    """Tokens per prompt (CLIP: 77)."""
    words: tuple[str, ...] = field(default_factory=lambda: DEFAULT_WORDS)
    """Whole words the tokenizer keeps as single tokens; anything else is split into characters."""
    num_train_timesteps: int = 1000
    """Length of the noise schedule."""

    @classmethod
    def tiny(cls, **overrides) -> SmallModelConfig:
        """A model small enough to build and run in a second on a CPU (for tests)."""
        sizes = dict(
            resolution=32,
            vae_channels=(8, 16),
            unet_channels=(16, 32),
            attention_head_dim=8,
            norm_num_groups=4,
            text_hidden_size=32,
            text_layers=1,
            text_heads=2,
        )
        sizes.update(overrides)
        return cls(**sizes)

    @property
    def vae_scale_factor(self) -> int:
        """How many times smaller the latent is than the image."""
        return 2 ** (len(self.vae_channels) - 1)


def unet_attention(cfg: SmallModelConfig) -> tuple[bool, ...]:
    """Which UNet blocks have cross-attention (see ``SmallModelConfig.unet_attention``)."""
    n = len(cfg.unet_channels)
    attention = cfg.unet_attention if cfg.unet_attention is not None else (True,) * (n - 1) + (False,)
    if len(attention) != n:
        raise ValueError(f"unet_attention has {len(attention)} entries for {n} UNet blocks.")
    return tuple(attention)


def build_unet(cfg: SmallModelConfig) -> UNet2DConditionModel:
    """A Stable-Diffusion-style conditional UNet of the configured size (stock diffusers block types only, so
    ``UNet2DConditionModel.from_pretrained`` reads it back without this package)."""
    attention = unet_attention(cfg)
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return UNet2DConditionModel(
        sample_size=cfg.resolution // cfg.vae_scale_factor,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cfg.text_hidden_size,
        attention_head_dim=cfg.attention_head_dim,
        time_embedding_dim=cfg.time_embedding_dim,
    )


def build_vae(cfg: SmallModelConfig) -> AutoencoderKL:
    """A KL autoencoder of the configured size."""
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=tuple(["DownEncoderBlock2D"] * n),
        up_block_types=tuple(["UpDecoderBlock2D"] * n),
        block_out_channels=cfg.vae_channels,
        layers_per_block=cfg.vae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.resolution,
        scaling_factor=cfg.vae_scaling_factor,
    )


def build_text_encoder(cfg: SmallModelConfig, vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    """A CLIP text transformer of the configured size."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_hidden_size * 4,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length,
        projection_dim=cfg.text_hidden_size,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def build_scheduler(cfg: SmallModelConfig) -> DDPMScheduler:
    """Stable Diffusion's noise schedule (scaled-linear betas) with the configured prediction type, rescaled to
    zero terminal SNR if the config says so.

    Raises:
        ValueError: zero terminal SNR with epsilon prediction.
    """
    if cfg.zero_terminal_snr and cfg.prediction_type != "v_prediction":
        raise ValueError(
            "--model.zero-terminal-snr needs --model.prediction-type v_prediction: at the last timestep the latent is "
            "pure noise, so predicting the noise there teaches nothing."
        )
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type=cfg.prediction_type,
        rescale_betas_zero_snr=cfg.zero_terminal_snr,
        timestep_spacing="trailing" if cfg.zero_terminal_snr else "leading",
        steps_offset=1,
    )


def model_index(cfg: SmallModelConfig) -> dict:
    """The ``model_index.json`` contents that make the folder a ``StableDiffusionPipeline``."""
    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def write_small_model(folder: Path, cfg: SmallModelConfig | None = None, seed: int = 0) -> Path:
    """Write a randomly initialised small model folder.

    The folder is built next to its destination and renamed into place, so a crash never leaves a half
    written model where the loader would find it.

    Args:
        folder: Destination; replaced if it exists.
        cfg: Sizes; defaults to :class:`SmallModelConfig`.
        seed: Seed of the random weights.

    Returns:
        The folder.
    """
    cfg = cfg or SmallModelConfig()

    def write(tmp: Path) -> None:
        vocab_size = write_tokenizer(tmp / "tokenizer", cfg.words, cfg.max_length)
        vocab, _ = build_vocab(cfg.words)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            text_encoder = build_text_encoder(cfg, vocab_size, vocab[BOS_TOKEN], vocab[EOS_TOKEN])
            unet = build_unet(cfg)
            vae = build_vae(cfg)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        build_scheduler(cfg).save_pretrained(tmp / "scheduler")
        (tmp / "model_index.json").write_text(json.dumps(model_index(cfg), indent=2) + "\n")

    return atomic_write_folder(Path(folder), write)
