"""VT-SDS: Eq. 10, the v schedule, annealing, the surrogate gradient, and skipping the personalised pass."""

from __future__ import annotations

import math

import pytest
import torch

from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
from avatarstudio_ns.data.keyframes import Keyframe
from avatarstudio_ns.guidance.adapters import PERSONAL_ADAPTER, add_lora
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.personalization.personalized_model import PersonalizedModel
from avatarstudio_ns.guidance.prediction import alphabar_at
from avatarstudio_ns.guidance.schedules import annealed_t_max, sds_weight
from avatarstudio_ns.guidance.vtsds import (
    VTSDSGuidance,
    VTSDSGuidanceConfig,
    combine_noise_predictions,
    v_for_timestep,
)


def test_eq10_matches_hand_computation_on_both_sides_of_k():
    shape = (2, 4, 3, 3)
    eps_text = torch.full(shape, 1.0)
    eps_pers = torch.full(shape, 3.0)
    eps_uncond = torch.full(shape, -2.0)
    w, v_high, k = 10.0, 0.6, 600
    t = torch.tensor([900, 300])  # above K: v = v_high; below K: v = 1
    v = v_for_timestep(t, v_high, k)
    assert v.tolist() == pytest.approx([0.6, 1.0])
    psi = combine_noise_predictions(eps_text, eps_pers, eps_uncond, w, v)
    above = 10 * (0.6 * 1.0 + 0.4 * 3.0) + (1 - 10) * -2.0  # 18 + 18 = 36
    below = 10 * 1.0 + (1 - 10) * -2.0  # 10 + 18 = 28
    assert torch.allclose(psi[0], torch.full(shape[1:], above))
    assert torch.allclose(psi[1], torch.full(shape[1:], below))
    # At t == K exactly the base model alone guides.
    assert v_for_timestep(600, v_high, k).item() == 1.0
    # v = 1 needs no personalised prediction at all.
    psi_no_pers = combine_noise_predictions(eps_text, None, eps_uncond, w, 1.0)
    assert torch.allclose(psi_no_pers, torch.full(shape, below))
    with pytest.raises(ValueError):
        combine_noise_predictions(eps_text, None, eps_uncond, w, 0.6)


def test_annealing_endpoints_and_monotonic():
    for mode in ("linear", "sqrt"):
        values = [annealed_t_max(s, 100, 0.98, 0.5, mode) for s in range(101)]
        assert values[0] == pytest.approx(0.98) and values[-1] == pytest.approx(0.5)
        assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert annealed_t_max(50, 100, 0.98, 0.5, "none") == pytest.approx(0.98)
    assert annealed_t_max(50, 100, 0.98, 0.5, "linear") == pytest.approx(0.74)


def test_sds_weights():
    abar = torch.tensor([0.25, 0.64])
    assert torch.allclose(sds_weight(abar), 1 - abar)
    assert torch.allclose(sds_weight(abar, "sds"), abar.sqrt() * (1 - abar).sqrt())
    assert torch.allclose(sds_weight(abar, "uniform"), torch.ones(2))


@pytest.fixture(scope="module")
def tiny_guidance(tmp_path_factory):
    folder = write_small_model(tmp_path_factory.mktemp("model") / "tiny", SmallModelConfig.tiny())
    base = load_diffusion(str(folder))
    add_lora(base.unet, rank=2, adapter_name=PERSONAL_ADAPTER)
    with torch.no_grad():  # make the adapter matter, as after training
        for name, p in base.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    keyframes = [
        Keyframe(0, 0, 0.0, "bcdfghjklm", "photo of a bcdfghjklm person"),
        Keyframe(1, 0, 0.0, "npqrstvwxz", "photo of a npqrstvwxz person"),
    ]
    personalized = PersonalizedModel(base.unet, keyframes, "lora", PERSONAL_ADAPTER)

    def make(**overrides):
        config = VTSDSGuidanceConfig(
            base_model=str(folder),
            prompt="photo of a person with blue hair",
            guidance_resolution=None,
            release_text_encoder=False,
            **overrides,
        )
        return VTSDSGuidance(config, base=base, personalized=personalized)

    return make


def _count_personal_calls(guidance, monkeypatch):
    calls = []
    original = guidance._eps_personalized

    def counting(z_t, t, text):
        calls.append(t.clone())
        return original(z_t, t, text)

    monkeypatch.setattr(guidance, "_eps_personalized", counting)
    return calls


def test_v_equal_one_skips_personalised_model(tiny_guidance, monkeypatch):
    # t_max below K: every sampled t has v = 1, so the personalised UNet must never run.
    guidance = tiny_guidance(t_max_start=0.5, t_max_end=0.5, k_timestep=600)
    calls = _count_personal_calls(guidance, monkeypatch)
    images = torch.rand(2, 3, 32, 32)
    for step in range(3):
        out = guidance(images, [0, 1], step, 10, generator=torch.Generator().manual_seed(step))
        assert (out["v"] == 1).all() and (out["t"] <= 600).all()
    assert calls == []
    # Above K it must run, only on the items that need it.
    guidance = tiny_guidance(t_min=0.7, t_max_start=0.98, k_timestep=600)
    calls = _count_personal_calls(guidance, monkeypatch)
    out = guidance(images, [0, 1], 0, 10, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1 and (out["v"] == pytest.approx(0.6))
    # Original SDS ablation: never.
    guidance = tiny_guidance(t_min=0.7, use_personalized=False)
    calls = _count_personal_calls(guidance, monkeypatch)
    guidance(images, [0, 1], 0, 10, generator=torch.Generator().manual_seed(0))
    assert calls == []


def test_surrogate_gradient_is_weighted_residual(tiny_guidance, monkeypatch):
    guidance = tiny_guidance(t_min=0.7, t_max_start=0.98)
    recorded = {}
    combine = combine_noise_predictions

    def recording_combine(eps_text, eps_pers, eps_uncond, w, v):
        recorded["psi"] = combine(eps_text, eps_pers, eps_uncond, w, v)
        return recorded["psi"]

    monkeypatch.setattr("avatarstudio_ns.guidance.vtsds.combine_noise_predictions", recording_combine)
    z_holder = {}
    encode = guidance.base.encode_images

    def recording_encode(images, sample=False, generator=None):
        z = encode(images, sample, generator)
        z.retain_grad()
        z_holder["z"] = z
        return z

    monkeypatch.setattr(guidance.base, "encode_images", recording_encode)
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    generator = torch.Generator().manual_seed(3)
    out = guidance(images, [1], 0, 10, generator=generator)
    out["loss_vtsds"].backward()

    # Replay the generator to recover the noise the guidance drew.
    replay = torch.Generator().manual_seed(3)
    t = guidance.sample_timesteps(1, 0, 10, replay)
    eps = torch.randn(z_holder["z"].shape, generator=replay)
    assert torch.equal(t, out["t"])
    w_t = 1 - alphabar_at(guidance.base.alphas_cumprod, t)
    expected = w_t.reshape(-1, 1, 1, 1) * (recorded["psi"] - eps)
    assert torch.allclose(z_holder["z"].grad, expected, atol=1e-5, rtol=1e-4)
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert out["v"].item() == pytest.approx(0.6)


def test_nonfinite_gradient_is_zeroed(tiny_guidance, monkeypatch):
    guidance = tiny_guidance()
    monkeypatch.setattr(guidance, "_eps_base", lambda z_t, t, a, b: (z_t * math.nan, z_t * 0))
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = guidance(images, [0], 0, 10)
    out["loss_vtsds"].backward()
    assert out["nonfinite"].item() == 1.0
    assert torch.isfinite(out["loss_vtsds"]) and torch.count_nonzero(images.grad) == 0


def test_a_wide_render_is_guided_on_the_square_that_holds_its_head(tiny_guidance):
    guidance = tiny_guidance(t_min=0.7, t_max_start=0.98)
    images = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    accumulation = torch.zeros(2, 24, 40)
    accumulation[0, 2:22, 20:36] = 1.0  # a head right of centre: the square is columns 16-39
    accumulation[1, 2:22, 4:36] = 1.0  # wider than the image is high: a padded square, columns 2-37
    out = guidance(images, [0, 1], 0, 10, generator=torch.Generator().manual_seed(0), foreground=accumulation)
    out["loss_vtsds"].backward()
    seen = images.grad.abs().sum(dim=(1, 2)) > 0
    assert seen[0, 16:].all() and not seen[0, :16].any()
    assert seen[1, 2:38].all() and not seen[1, [0, 1, 38, 39]].any()
    # A square render is seen whole, with or without its accumulation, exactly as before.
    square = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    head = torch.zeros(1, 32, 32)
    head[0, 8:20, 10:30] = 1.0
    with_head = guidance(square, [0], 0, 10, generator=torch.Generator().manual_seed(2), foreground=head)
    without = guidance(square, [0], 0, 10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(with_head["loss_vtsds"], without["loss_vtsds"])
