"""Loading diffusion models: the tiny diffusers folder, prediction types, text cache, clear errors offline."""

from __future__ import annotations

import time

import pytest
import torch

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.guidance import loading
from avatarstudio_ns.guidance.loading import DiffusionModelNotFound, load_diffusion
from avatarstudio_ns.guidance.prediction import add_noise, to_epsilon, training_target, v_to_epsilon


def test_v_prediction_converts_to_epsilon():
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    abar = torch.tensor([0.9, 0.5, 0.05])
    x_t = add_noise(x0, eps, abar)
    v = training_target(x0, eps, abar, "v_prediction")
    assert torch.allclose(v_to_epsilon(v, x_t, abar), eps, atol=1e-5)
    assert torch.allclose(to_epsilon(x0, x_t, abar, "sample"), eps, atol=1e-4)
    assert torch.equal(to_epsilon(eps, x_t, abar, "epsilon"), eps)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())


def test_tiny_folder_loads_in_diffusers_and_here(tiny_folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("photo of a qwrtzpsdfg person", num_inference_steps=2, height=32, width=32, output_type="pt")
    assert image.images.shape == (1, 3, 32, 32)

    model = load_diffusion(str(tiny_folder))
    assert model.prediction_type == "epsilon" and model.resolution == 32
    assert not any(p.requires_grad for p in model.unet.parameters())
    tokens = model.tokenizer("photo of a qwrtzpsdfg person").input_ids
    assert model.tokenizer.eos_token_id in tokens and model.tokenizer.unk_token_id not in tokens[1:-1]
    emb = model.embed(["photo of a man", ""])
    assert emb.shape == (2, 77, 32)
    model.release_text_encoder()
    assert torch.equal(model.embed("photo of a man")[0], emb[0])  # cached
    with pytest.raises(RuntimeError, match="released"):
        model.embed("an uncached prompt")
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    z = model.encode_images(images)
    assert z.shape == (2, 4, 16, 16)
    z.sum().backward()
    assert images.grad is not None  # gradients flow through the encoder


def test_v_prediction_model_loads(tmp_path):
    folder = write_small_model(tmp_path / "v", SmallModelConfig.tiny(prediction_type="v_prediction"))
    model = load_diffusion(str(folder))
    assert model.prediction_type == "v_prediction"
    z = torch.randn(1, 4, 16, 16)
    eps = model.predict_epsilon(model.unet, z, torch.tensor(500), model.embed(""))
    assert eps.shape == z.shape and torch.isfinite(eps).all()


def test_missing_model_gives_one_clear_error_quickly(tmp_path, monkeypatch):
    start = time.monotonic()
    with pytest.raises(DiffusionModelNotFound, match="local diffusers folder"):
        load_diffusion("avatarstudio-nobody/no-such-model-anywhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DiffusionModelNotFound, match="offline"):
        load_diffusion("avatarstudio-nobody/no-such-model-anywhere")
    assert time.monotonic() - start < 30
    with pytest.raises(DiffusionModelNotFound, match="does not exist"):
        load_diffusion(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(DiffusionModelNotFound, match="vae/"):
        load_diffusion(str(tmp_path / "half"))
    monkeypatch.setattr(loading, "builtin_model_dir", lambda: tmp_path / "no_builtin")
    with pytest.raises(DiffusionModelNotFound, match="not shipped yet"):
        load_diffusion("builtin")
