"""Personalisation on the tiny diffusers model: learning, shared noise, saved weights, resuming."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.data.keyframes import Keyframe
from avatarstudio_ns.guidance.adapters import adapters_disabled
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.personalization.finetune import STATE_NAME, PersonalizeConfig, personalize
from avatarstudio_ns.guidance.personalization.personalized_model import is_complete, load_personalization
from avatarstudio_ns.guidance.prediction import add_noise, alphabar_at


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())


def _dataset():
    """Three fixed 32 px keyframe images: flat colour fields with a bright square at different places."""
    images = []
    for i, colour in enumerate([(0.9, 0.2, 0.2), (0.2, 0.8, 0.3), (0.2, 0.3, 0.9)]):
        image = torch.tensor(colour).reshape(3, 1, 1).expand(3, 32, 32).clone()
        image[:, 4 + 8 * i : 12 + 8 * i, 8:20] = 1.0
        images.append(image)
    keyframes = [Keyframe(c, 0, 0.0) for c in range(3)]
    return keyframes, images


def _config(**overrides):
    settings = dict(
        steps=8,
        batch_size=3,
        lora_rank=4,
        learning_rate=1e-3,
        num_class_images=2,
        class_image_steps=2,
        save_every=4,
        progress=False,
    )
    settings.update(overrides)
    return PersonalizeConfig(**settings)


@torch.no_grad()
def _eval_loss(base, unet, keyframes, images) -> float:
    """Denoising loss on the keyframes at fixed timesteps and noise (robust to the randomness of training)."""
    generator = torch.Generator().manual_seed(123)
    z = base.encode_images(torch.stack(images), sample=False)
    emb = base.embed([k.prompt for k in keyframes])
    total = 0.0
    for t in (100, 300, 500, 700, 900):
        eps = torch.randn(z.shape, generator=generator)
        t_ = torch.full((z.shape[0],), t)
        z_t = add_noise(z, eps, alphabar_at(base.alphas_cumprod, t_))
        total += float(F.mse_loss(unet(z_t, t_, encoder_hidden_states=emb).sample, eps))
    return total / 5


def test_loss_falls_noise_is_shared_and_weights_load_in_diffusers(tiny_folder, tmp_path):
    keyframes, images = _dataset()
    base = load_diffusion(str(tiny_folder))
    seen = []
    config = _config(steps=60, learning_rate=5e-3, lora_rank=8, save_every=1000, prior_weight=0.5)
    result = personalize(keyframes, images, base, config, tmp_path / "p", callbacks=[seen.append])

    assert len(result.losses) == 60 and len(seen) == 60
    for info in seen:  # shared noise and timestep inside every batch, all keyframes different
        assert torch.equal(info.noise, info.noise[:1].expand_as(info.noise))
        assert (info.timesteps == info.timesteps[0]).all()
        assert len(set(info.keyframe_indices)) == 3
    assert len({float(info.noise[0, 0, 0, 0]) for info in seen}) == 60  # ...but fresh noise every step

    assert not getattr(base.unet, "peft_config", None)  # the base model is left untouched
    out = tmp_path / "p"
    assert is_complete(out, result.cache_key)
    assert (out / "pytorch_lora_weights.safetensors").is_file() and not (out / STATE_NAME).exists()
    assert len(list((out / "class_images").rglob("*.png"))) == 2
    manifest = json.loads((out / "keyframes.json").read_text())
    assert [k["prompt"] for k in manifest["keyframes"]] == [k.prompt for k in result.keyframes]
    assert len({k.identifier for k in result.keyframes}) == 3

    before = _eval_loss(base, base.unet, result.keyframes, images)
    personalized = load_personalization(out, base)
    with personalized.active():
        after = _eval_loss(base, personalized.unet, result.keyframes, images)
    with adapters_disabled(base.unet):
        assert _eval_loss(base, base.unet, result.keyframes, images) == pytest.approx(before)
    assert after < 0.9 * before, (before, after)
    early, late = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert late < early, (early, late)

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder)
    pipe.load_lora_weights(out)
    assert _eval_loss(base, pipe.unet, result.keyframes, images) == pytest.approx(after, rel=1e-4)

    # The edit stage's path: a guidance built from a base model string and the personalisation folder.
    from avatarstudio_ns.guidance.vtsds import VTSDSGuidance, VTSDSGuidanceConfig

    guidance = VTSDSGuidanceConfig(
        base_model=str(tiny_folder), personalization_dir=out, prompt="photo of a person with blue hair", t_min=0.7
    ).setup(device="cpu")
    assert guidance.keyframe_prompts == [k.prompt for k in result.keyframes] and guidance.base.text_encoder is None
    renders = torch.rand(2, 3, 24, 24, requires_grad=True)
    losses = guidance(renders, [2, 0], step=0, total_steps=100)
    losses["loss_vtsds"].backward()
    assert isinstance(guidance, VTSDSGuidance) and renders.grad.abs().sum() > 0
    assert (losses["v"] == pytest.approx(0.6)) and losses["nonfinite"].item() == 0

    # Same inputs and settings: the finished personalisation is reused, not retrained.
    again = personalize(keyframes, images, base, config, out)
    assert again.reused and again.cache_key == result.cache_key


def test_interrupted_run_resumes_and_matches_uninterrupted(tiny_folder, tmp_path):
    keyframes, images = _dataset()
    base = load_diffusion(str(tiny_folder))
    config = _config(class_image_dir=tmp_path / "classes")

    def stop_after_five(info):
        if info.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        personalize(keyframes, images, base, config, tmp_path / "a", callbacks=[stop_after_five])
    assert (tmp_path / "a" / STATE_NAME).is_file() and not is_complete(tmp_path / "a")
    assert not getattr(base.unet, "peft_config", None)
    steps = []
    resumed = personalize(keyframes, images, base, config, tmp_path / "a", callbacks=[lambda i: steps.append(i.step)])
    assert resumed.resumed_from == 4 and steps == [5, 6, 7, 8] and len(resumed.losses) == 8

    straight = personalize(keyframes, images, base, config, tmp_path / "b")
    assert straight.resumed_from == 0 and straight.cache_key == resumed.cache_key
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    a = safetensors.torch.load_file(tmp_path / "a" / "pytorch_lora_weights.safetensors")
    b = safetensors.torch.load_file(tmp_path / "b" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_full_mode_writes_a_diffusers_unet(tiny_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    keyframes, images = _dataset()
    base = load_diffusion(str(tiny_folder))
    result = personalize(keyframes, images, base, _config(mode="full", steps=2, prior_weight=0), tmp_path / "f")
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "f" / "unet")
    personalized = load_personalization(tmp_path / "f", base)
    assert personalized.mode == "full" and personalized.prompts == [k.prompt for k in result.keyframes]
    p = dict(unet.named_parameters())["conv_in.weight"]
    assert torch.equal(p, dict(personalized.unet.named_parameters())["conv_in.weight"])
    assert not torch.equal(p, dict(base.unet.named_parameters())["conv_in.weight"])


def test_keyframes_of_a_capture_with_a_held_out_frontal_camera(tmp_path):
    """VHAP layout: camera 8 is frontal and held out, so its nearest training camera gives the time keyframes."""
    from fixtures.vhap_capture import write_vhap_capture

    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
    from avatarstudio_ns.data.dataset import AvatarDataset
    from avatarstudio_ns.data.keyframes import KeyframeSelectionConfig, avatar_keyframes, keyframe_images

    capture = write_vhap_capture(tmp_path / "capture", num_timesteps=4)
    parser = AvatarStudioDataParserConfig(data=capture).setup()
    train = AvatarDataset(parser.get_dataparser_outputs("train"))
    val = AvatarDataset(parser.get_dataparser_outputs("val"))
    codes = torch.zeros(4, 8)
    codes[3, 0] = 5.0  # the most deviant frame; frames 0 and 1 are excluded (first frame and its neighbour)
    keyframes = avatar_keyframes(codes, train, val, KeyframeSelectionConfig(n_time=1))
    first = [k for k in keyframes if k.source == "first_frame"]
    timed = [k for k in keyframes if k.source == "time"]
    assert len(first) == 15  # camera 8 is held out of training
    assert [k.timestep_index for k in timed] == [3]
    # A training camera stands in for the held-out frontal camera 8.
    assert timed[0].camera_index != 8
    assert timed[0].camera_index in set(train.metadata["camera_indices"].tolist())
    images = keyframe_images(train, keyframes)
    assert len(images) == len(keyframes) and images[0].shape[0] == 3
    assert 0.0 <= float(images[0].min()) and float(images[0].max()) <= 1.0
