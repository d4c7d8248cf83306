"""Captioned renders of random synthetic heads: the training set of the built-in diffusion model.

Each identity (random hair colour, skin tone, eye and lip colour, hair style, head shape) is rendered at one
random instant of a random performance (expression and head pose) from a few random cameras around it. The
set is rendered in shards, each written atomically to a cache folder, so an interrupted run resumes at the
first missing shard and a finished one is never rendered again. A shard's content depends only on the seed
and its index, not on how many workers render it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarstudio_ns.atomic import atomic_save
from avatarstudio_ns.data.synth import (
    EYE_COLORS,
    HAIR_COLORS,
    HAIR_STYLES,
    LIP_COLORS,
    SKIN_TONES,
    HeadAttributes,
    Performance,
    RenderSettings,
    SynthHead,
    caption,
    make_rig,
    render_frame,
    sample_attributes,
)
from avatarstudio_ns.data.synth.rig import LOOK_AT, look_at

TABLES: dict[str, tuple[str, ...]] = {
    "hair": tuple(HAIR_COLORS),
    "skin": tuple(SKIN_TONES),
    "eyes": tuple(EYE_COLORS),
    "lips": tuple(LIP_COLORS),
    "style": tuple(HAIR_STYLES),
}
"""Attribute name -> the names its stored index refers to."""

HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("blue", "dark"),
    ("green", "pale"),
    ("pink", "brown"),
    ("white", "tan"),
    ("red", "medium"),
    ("purple", "light"),
)
"""(hair colour, skin tone) pairs never rendered for training, to test that the model composes the two. Each
hair colour and each skin tone appears once, so every word is still seen in other combinations."""


@dataclass
class HeadDatasetConfig:
    """What to render."""

    num_identities: int = 1200
    """Random identities."""
    views_per_identity: int = 4
    """Random cameras per identity (all at the same instant)."""
    resolution: int = 64
    """Image side, pixels."""
    identities_per_shard: int = 100
    """Identities per cache file; the unit of resumption."""
    front_fraction: float = 0.6
    """Share of cameras drawn near the face (the rest anywhere on the circle), since edits are judged mostly
    from the front."""
    front_azimuth_deg: float = 50.0
    """Largest azimuth of a near-face camera, degrees either side of the face."""
    elevation_deg: tuple[float, float] = (-8.0, 28.0)
    """Camera elevation range, degrees above the horizon (the capture rig uses 0 and 22)."""
    distance: tuple[float, float] = (0.95, 1.1)
    """Camera distance range, metres (the rig's distance is 1 and its framing is kept)."""
    heldout_pairs: tuple[tuple[str, str], ...] = HELDOUT_PAIRS
    """(hair colour, skin tone) pairs left out of this set."""
    exclude_heldout: bool = True
    """Leave the held-out pairs out (training set); False draws every combination (evaluation set)."""
    supersample: int = 2
    """Antialiasing grid at edge pixels (see RenderSettings)."""
    seed: int = 0
    """Seed of identities, instants and cameras."""
    workers: int = 2
    """Processes rendering shards in parallel (each single-threaded; the default suits a 2-core machine)."""

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_identities / self.identities_per_shard)


@dataclass
class HeadImages:
    """Rendered heads and the attribute indices (into TABLES) of each image."""

    rgb: np.ndarray
    """(N, H, W, 3) uint8 images on the white backdrop."""
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    """TABLES key -> (N,) int64 indices."""
    azimuth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """(N,) camera azimuth relative to the face, degrees in (-180, 180]."""

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def attributes(self, i: int) -> HeadAttributes:
        """The identity of image i (head shape not stored: it never appears in captions)."""
        names = {key: TABLES[key][int(self.attrs[key][i])] for key in TABLES}
        return HeadAttributes(
            hair_color=names["hair"],
            skin_tone=names["skin"],
            eye_color=names["eyes"],
            lip_color=names["lips"],
            hair_style=names["style"],
        )

    def images(self) -> torch.Tensor:
        """All images as a float tensor (N, 3, H, W) in [-1, 1], the VAE's range."""
        return torch.from_numpy(self.rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    @staticmethod
    def concat(parts: list[HeadImages]) -> HeadImages:
        return HeadImages(
            rgb=np.concatenate([p.rgb for p in parts]),
            attrs={k: np.concatenate([p.attrs[k] for p in parts]) for k in TABLES},
            azimuth=np.concatenate([p.azimuth for p in parts]),
        )


def _random_cameras(cfg: HeadDatasetConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world matrices (V, 4, 4) looking at the head, and their azimuths in degrees."""
    c2ws, azimuths = [], []
    for _ in range(cfg.views_per_identity):
        if rng.random() < cfg.front_fraction:
            azimuth = rng.uniform(-cfg.front_azimuth_deg, cfg.front_azimuth_deg)
        else:
            azimuth = rng.uniform(-180.0, 180.0)
        a = math.radians(azimuth)
        e = math.radians(rng.uniform(*cfg.elevation_deg))
        direction = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
        c2ws.append(look_at(LOOK_AT + rng.uniform(*cfg.distance) * direction, LOOK_AT))
        azimuths.append(azimuth)
    return np.stack(c2ws), np.array(azimuths, dtype=np.float32)


def _sample_identity(cfg: HeadDatasetConfig, rng: np.random.Generator) -> HeadAttributes:
    while True:
        attributes = sample_attributes(rng)
        if not cfg.exclude_heldout or (attributes.hair_color, attributes.skin_tone) not in cfg.heldout_pairs:
            return attributes


def render_shard(cfg: HeadDatasetConfig, shard: int) -> HeadImages:
    """Render one shard; its content depends only on ``cfg.seed`` and ``shard``."""
    rng = np.random.default_rng([cfg.seed, shard])
    # The rig supplies the intrinsics (the capture's framing); the cameras are replaced per identity.
    rig = make_rig(num_cameras=1, resolution=cfg.resolution)
    settings = RenderSettings(supersample=cfg.supersample)
    first = shard * cfg.identities_per_shard
    count = min(cfg.identities_per_shard, cfg.num_identities - first)
    rgbs, azimuths, attrs = [], [], {k: [] for k in TABLES}
    for _ in range(count):
        attributes = _sample_identity(cfg, rng)
        performance = Performance(seed=int(rng.integers(1, 1_000_000)))
        state = performance.state(float(rng.uniform(0.0, 1.0)))
        c2w, azimuth = _random_cameras(cfg, rng)
        views = render_frame(SynthHead(attributes), dataclasses.replace(rig, camera_to_world=c2w), state, settings)
        rgbs.append((views.rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy())
        azimuths.append(azimuth)
        values = (
            attributes.hair_color,
            attributes.skin_tone,
            attributes.eye_color,
            attributes.lip_color,
            attributes.hair_style,
        )
        for key, value in zip(TABLES, values, strict=True):
            attrs[key] += [TABLES[key].index(value)] * cfg.views_per_identity
    return HeadImages(
        rgb=np.concatenate(rgbs),
        attrs={k: np.array(v, dtype=np.int64) for k, v in attrs.items()},
        azimuth=np.concatenate(azimuths),
    )


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:04d}.npz"


def _save_shard(images: HeadImages, path: Path) -> None:
    """Write a shard atomically: a killed run leaves either the whole file or none."""
    arrays = {"rgb": images.rgb, "azimuth": images.azimuth, **{f"attr_{k}": v for k, v in images.attrs.items()}}
    atomic_save(path, lambda tmp: np.savez(tmp, **arrays))


def _load_shard(path: Path) -> HeadImages:
    with np.load(path) as data:
        return HeadImages(rgb=data["rgb"], attrs={k: data[f"attr_{k}"] for k in TABLES}, azimuth=data["azimuth"])


def _render_and_save(cfg: HeadDatasetConfig, shard: int, path: Path) -> int:
    _save_shard(render_shard(cfg, shard), path)
    return shard


def build_dataset(
    cfg: HeadDatasetConfig, folder: Path, on_shard: Callable[[int, int], None] | None = None
) -> HeadImages:
    """Render the missing shards of a dataset into ``folder`` and load the whole set.

    Args:
        cfg: What to render. Changing it invalidates nothing automatically: use a new folder.
        folder: Cache folder (created).
        on_shard: Called with (shards done, shards total) after each shard, e.g. to advance a progress bar.

    Returns:
        Every image of the set, in shard order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [s for s in range(cfg.num_shards) if not _shard_path(folder, s).exists()]
    done = cfg.num_shards - len(missing)
    if on_shard:
        on_shard(done, cfg.num_shards)
    if missing and cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            futures = [pool.submit(_render_and_save, cfg, s, _shard_path(folder, s)) for s in missing]
            for future in futures:
                future.result()
                done += 1
                if on_shard:
                    on_shard(done, cfg.num_shards)
    else:
        for shard in missing:
            _render_and_save(cfg, shard, _shard_path(folder, shard))
            done += 1
            if on_shard:
                on_shard(done, cfg.num_shards)
    return HeadImages.concat([_load_shard(_shard_path(folder, s)) for s in range(cfg.num_shards)])


def training_caption(
    attributes: HeadAttributes, generator: torch.Generator, p_skin: float = 0.85, p_eyes: float = 0.5
) -> str:
    """A random caption of an identity: always the hair colour, usually the skin tone, sometimes the eyes.

    Hair colour is always named because it is what edits change most; dropping the other phrases at random
    teaches the model short prompts such as "photo of a person with blue hair". The hair style word is
    named half the time, lip colour whenever it is not natural.

    Args:
        attributes: The identity.
        generator: Source of the random choices (its state is checkpointed by the trainer).
        p_skin: Probability of naming the skin tone.
        p_eyes: Probability of naming the eye colour.
    """
    u = torch.rand(3, generator=generator).tolist()
    parts = ["hair", "lips"]
    if u[0] < p_skin:
        parts.append("skin")
    if u[1] < p_eyes:
        parts.append("eyes")
    if u[2] < 0.5:
        # caption() names no style word for the "bob" style, so this drops the word and keeps the colour.
        attributes = attributes.replace(hair_style="bob")
    return caption(attributes, parts=tuple(parts))
