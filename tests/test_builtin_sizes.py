"""Sizes of the built-in model: the default sizes describe the shipped folder; they have 16x16 latents at 64 px, fit
the package budget and are read by diffusers' own pipeline and by this package's loader unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from avatarstudio_ns.builtin.head_images import TABLES, describe
from avatarstudio_ns.builtin.small_model import SmallModelConfig, build_unet, build_vae, write_small_model
from avatarstudio_ns.builtin.train import BUILTIN_SIZES, builtin_sizes, builtin_sizes_v1
from avatarstudio_ns.guidance.loading import load_diffusion

SHIPPED = Path(__file__).resolve().parents[1] / "avatarstudio_ns" / "assets" / "builtin_model"


def _plain(config) -> dict:
    return {k: v for k, v in json.loads(json.dumps(dict(config))).items() if not k.startswith("_")}


def test_default_sizes_describe_the_shipped_model():
    if not (SHIPPED / "unet" / "config.json").exists():
        pytest.skip(f"the built-in model is not in {SHIPPED}")
    sizes = builtin_sizes()
    for part, build in (("unet", build_unet), ("vae", build_vae)):
        shipped = json.loads((SHIPPED / part / "config.json").read_text())
        built = _plain(build(sizes).config)
        assert {k: v for k, v in shipped.items() if k in built and k != "scaling_factor"} == {
            k: built[k] for k in shipped if k in built and k != "scaling_factor"
        }, part
    vocab = json.loads((SHIPPED / "tokenizer" / "vocab.json").read_text())
    assert all(word + "</w>" in vocab for word in sizes.words)
    scheduler = json.loads((SHIPPED / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == sizes.prediction_type
    assert scheduler["rescale_betas_zero_snr"] == sizes.zero_terminal_snr


def test_v1_sizes_describe_the_first_shipped_model(tmp_path):
    sizes = builtin_sizes_v1()
    assert sizes.latent_channels == 4 and sizes.resolution // sizes.vae_scale_factor == 8
    assert all(word in sizes.words for word in ("blue", "hair", "skin"))


def test_default_sizes_have_16x16_latents_and_fit_the_budget(tmp_path):
    sizes = builtin_sizes()
    assert BUILTIN_SIZES["v4"] is builtin_sizes and sizes.vae_scale_factor == 4
    assert sizes.resolution // sizes.vae_scale_factor == 16
    folder = write_small_model(tmp_path / "v2", sizes)
    weights_mb = sum(f.stat().st_size for f in folder.rglob("*.safetensors")) / 2**20
    assert weights_mb < 60
    assert json.loads((folder / "unet" / "config.json").read_text())["down_block_types"] == [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ]

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    prompt = describe({"hair": "blue", "style": "bob", "eyes": "green", "brows": "black", "lips": "red"})
    out = pipe(prompt, num_inference_steps=2, height=64, width=64, output_type="pt")
    assert out.images.shape == (1, 3, 64, 64)
    # Every caption word is one token, so the prompt is as many tokens as words (punctuation apart).
    assert len(pipe.tokenizer.tokenize(prompt)) == len(prompt.replace(",", " ,").split())

    model = load_diffusion(str(folder))
    assert model.resolution == 64 and model.vae_scale_factor == 4
    assert model.encode_images(torch.rand(1, 3, 64, 64)).shape == (1, sizes.latent_channels, 16, 16)


def test_caption_words_cover_every_attribute_value():
    words = set(builtin_sizes().words)
    assert {"eyebrows", "in", "bob"} <= words
    assert all(value in words for table in TABLES.values() for value in table)


def test_unet_attention_chooses_the_blocks():
    cfg = SmallModelConfig.tiny(unet_channels=(16, 32, 32), unet_attention=(False, True, False))
    unet = build_unet(cfg)
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert unet.config.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    default = build_unet(SmallModelConfig.tiny())
    assert default.config.down_block_types == ("CrossAttnDownBlock2D", "DownBlock2D")
    with pytest.raises(ValueError, match="unet_attention"):
        build_unet(SmallModelConfig.tiny(unet_attention=(True,)))
