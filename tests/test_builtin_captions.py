"""Captions and held-out pairs of the built-in model's training set: every attribute is named and held out."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from avatarstudio_ns.builtin.head_images import (
    HELDOUT_PAIRS,
    TABLES,
    CaptionConfig,
    HeadDatasetConfig,
    attribute_values,
    build_dataset,
    caption_vocabulary,
    check_pairs,
    describe,
    is_heldout,
    sample_identity,
    training_caption,
)
from avatarstudio_ns.builtin.sample_accuracy import SEEN_PROMPTS, prompt_targets
from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth import HeadAttributes
from avatarstudio_ns.guidance.loading import prompt_words


def test_describe_names_exactly_what_it_is_given():
    assert describe({}) == "photo of a person"
    assert describe({"hair": "blue"}) == "photo of a person with blue hair"
    assert describe({"hair": "brown", "skin": "light"}) == "photo of a person with brown hair and light skin"
    everything = {"hair": "red", "style": "long", "skin": "dark", "eyes": "green", "brows": "black", "lips": "pink"}
    assert describe(everything) == (
        "photo of a person with long red hair, dark skin, green eyes, black eyebrows and pink lips"
    )
    assert describe({"hair": "red", "style": "bob"}) == "photo of a person with red hair in a bob"
    assert describe({"style": "short", "eyes": "grey"}) == "photo of a person with short hair and grey eyes"


def test_captions_name_every_attribute_at_their_rates():
    generator = torch.Generator().manual_seed(0)
    head = attribute_values(HeadAttributes(hair_color="blue", hair_style="long", eye_color="green", brow_color="red"))
    assert head["brows"] == "red" and head["lips"] == "natural"
    captions = [training_caption(head, generator) for _ in range(2000)]
    phrases = {
        "hair": "blue hair",
        "style": "long",
        "skin": "light skin",
        "eyes": "green eyes",
        "brows": "red eyebrows",
        "lips": "natural lips",
    }
    rates = {key: np.mean([phrase in c for c in captions]) for key, phrase in phrases.items()}
    cfg = CaptionConfig()
    expected = {"hair": cfg.p_hair, "style": cfg.p_style, "skin": cfg.p_skin, "eyes": cfg.p_eyes}
    expected |= {"brows": cfg.p_brows_contrast, "lips": cfg.p_lips}
    assert all(abs(rates[key] - p) < 0.04 for key, p in expected.items()), rates
    # Brows that follow the hair are named less often: they add nothing to the hair's colour.
    matching = attribute_values(HeadAttributes(hair_color="blue"))
    assert matching["brows"] == "blue"
    named = np.mean(["eyebrows" in training_caption(matching, generator) for _ in range(2000)])
    assert abs(named - cfg.p_brows_match) < 0.04


def test_captions_of_what_shows_name_no_hidden_colour_and_draw_the_same_numbers():
    head = attribute_values(HeadAttributes(hair_color="blue", eye_color="green", lip_color="red"))
    cfg = CaptionConfig(only_visible=True)
    back = {"hair": True, "skin": True, "eyes": False, "lips": False, "brows": False}
    a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    hidden = [training_caption(head, a, cfg, back) for _ in range(500)]
    assert not any(word in c for c in hidden for word in ("eyes", "lips", "eyebrows"))
    assert np.mean(["blue hair" in c for c in hidden]) > 0.85
    # Where everything shows, the captions are those of the rule that ignores the camera, draw for draw.
    front = dict.fromkeys(back, True)
    assert [training_caption(head, a, cfg, front) for _ in range(200)] == [
        training_caption(head, b, CaptionConfig()) for _ in range(700)
    ][500:]
    with pytest.raises(ValueError, match="only_visible needs"):
        training_caption(head, a, cfg)


def test_heldout_pairs_cover_every_attribute_and_seen_prompts_avoid_them():
    check_pairs(HELDOUT_PAIRS)
    held = {key for a, _, b, _ in HELDOUT_PAIRS for key in (a, b)}
    assert held == set(TABLES)
    # Every attribute is composed with another in some pair, and a prompt names each pair exactly.
    heldout, seen = prompt_targets(HELDOUT_PAIRS)
    assert len(heldout) == len(HELDOUT_PAIRS) and seen == list(SEEN_PROMPTS)
    assert {key for targets in seen for key in targets} == set(TABLES)
    assert describe(heldout[0]) == "photo of a person with blue hair and dark skin"
    with pytest.raises(ValueError, match="held-out pair"):
        prompt_targets((("hair", "blue"),))
    with pytest.raises(ValueError, match="names a held-out pair"):
        prompt_targets((("hair", "black", "eyes", "blue"),))
    with pytest.raises(ValueError, match="Unknown eyes"):
        check_pairs((("eyes", "violet", "hair", "blue"),))


def test_identities_recolour_brows_and_leave_out_the_pairs():
    cfg = HeadDatasetConfig()
    rng = np.random.default_rng(0)
    values = [attribute_values(sample_identity(cfg, rng)) for _ in range(600)]
    assert not any(is_heldout(v, cfg.heldout_pairs) for v in values)
    contrast = np.mean([v["brows"] != v["hair"] for v in values])
    assert abs(contrast - cfg.brow_contrast_fraction) < 0.07
    # Held-out pairs are redrawn, not dropped: no value loses more than about a third of its uniform share.
    for key, table in TABLES.items():
        counts = Counter(v[key] for v in values)
        assert all(counts[name] > 0.5 * len(values) / len(table) for name in table), (key, counts)


def test_workers_render_what_one_process_renders_after_the_parents_torch_threads_ran(tmp_path):
    """A training run renders its evaluation set after training; forked render workers of a process whose torch
    threads had run hung in their first parallel op (no CPU, no end)."""
    sizes = dict(num_identities=2, views_per_identity=4, resolution=64, identities_per_shard=1)
    script = f"""
import torch
from pathlib import Path
from avatarstudio_ns.builtin.head_images import HeadDatasetConfig, build_dataset
torch.set_num_threads(2)  # the parent's torch threads run, as a training run's have
conv = torch.nn.Conv2d(8, 16, 3)
conv(torch.randn(16, 8, 64, 64, requires_grad=True)).square().mean().backward()
build_dataset(HeadDatasetConfig(**{sizes!r}, workers=2), Path({str(tmp_path / "workers")!r}))
"""
    subprocess.run([sys.executable, "-c", script], timeout=120, check=True)
    workers = build_dataset(HeadDatasetConfig(**sizes, workers=2), tmp_path / "workers")
    alone = build_dataset(HeadDatasetConfig(**sizes, workers=1), tmp_path / "alone")
    assert np.array_equal(workers.rgb, alone.rgb) and np.array_equal(workers.labels, alone.labels)


def test_dataset_stores_labels_brows_and_refuses_other_settings(tmp_path):
    cfg = HeadDatasetConfig(num_identities=2, views_per_identity=2, resolution=24, identities_per_shard=1, workers=1)
    data = build_dataset(cfg, tmp_path / "renders")
    assert data.labels is not None and data.labels.shape == (4, 24, 24)
    assert set(data.attrs) == set(TABLES)
    assert (data.labels == L.HAIR).any() and (data.labels == L.SKIN).any()
    assert data.attributes(0).brow_color in TABLES["brows"]
    # The same settings reuse the cache; other ones are refused instead of mixed in.
    assert np.array_equal(build_dataset(dataclasses.replace(cfg, workers=2), tmp_path / "renders").rgb, data.rgb)
    with pytest.raises(ValueError, match="brow_contrast_fraction"):
        build_dataset(dataclasses.replace(cfg, brow_contrast_fraction=0.3), tmp_path / "renders")
    old = tmp_path / "old"
    old.mkdir()
    (old / "shard_0000.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="older format"):
        build_dataset(cfg, old)


def test_the_caption_vocabulary_is_every_word_the_training_captions_use():
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    cfg = HeadDatasetConfig()
    captions = [training_caption(attribute_values(sample_identity(cfg, rng)), generator) for _ in range(3000)]
    used = {word for caption in captions for word in prompt_words(caption)}
    assert used == set(caption_vocabulary())
