"""Captioned renders of random synthetic heads: the training set of the built-in diffusion model.

Each identity (random hair colour and style, skin tone, eye, lip and brow colour, head shape) is rendered at one
random instant of a random performance (expression and head pose) from a few random cameras around it; its
per-pixel semantic labels are kept with the image (the attribute probe learns where to read each colour from
them). The set is rendered in shards, each written atomically to a cache folder, so an interrupted run resumes at
the first missing shard and a finished one is never rendered again. A shard's content depends only on the
settings, the seed and its index, not on how many workers render it.

Some pairs of attribute values are never rendered for training (``HELDOUT_PAIRS``), so that samples of prompts
naming them measure whether the model composes what it learnt separately.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarstudio_ns.atomic import atomic_save, atomic_write_bytes
from avatarstudio_ns.builtin.sitting import Sitting
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
    caption_of,
    make_rig,
    render_frame,
    sample_attributes,
)
from avatarstudio_ns.data.synth.rig import LOOK_AT, look_at
from avatarstudio_ns.guidance.loading import prompt_words
from avatarstudio_ns.threads import worker_pool

TABLES: dict[str, tuple[str, ...]] = {
    "hair": tuple(HAIR_COLORS),
    "skin": tuple(SKIN_TONES),
    "eyes": tuple(EYE_COLORS),
    "lips": tuple(LIP_COLORS),
    "brows": tuple(HAIR_COLORS),
    "style": tuple(HAIR_STYLES),
}
"""Attribute name -> the names its stored index refers to. Brows that follow the hair ("match" in the synth) are
stored under the hair's colour name: they are a darker shade of it, and that is what a caption calls them."""

FIELDS: dict[str, str] = {
    "hair": "hair_color",
    "skin": "skin_tone",
    "eyes": "eye_color",
    "lips": "lip_color",
    "brows": "brow_color",
    "style": "hair_style",
}
"""Attribute name -> the ``HeadAttributes`` field it comes from."""

HeldoutPair = tuple[str, str, str, str]
"""(attribute, value, attribute, value): two attribute values never rendered together for training."""

HELDOUT_PAIRS: tuple[HeldoutPair, ...] = (
    # (hair colour, skin tone), the pairs of the first model: each colour and tone at most once.
    ("hair", "blue", "skin", "dark"),
    ("hair", "green", "skin", "pale"),
    ("hair", "pink", "skin", "brown"),
    ("hair", "white", "skin", "tan"),
    ("hair", "red", "skin", "medium"),
    ("hair", "purple", "skin", "light"),
    # (lip colour, skin tone): every coloured lip once, on tones it contrasts with differently.
    ("lips", "red", "skin", "dark"),
    ("lips", "pink", "skin", "tan"),
    ("lips", "purple", "skin", "pale"),
    ("lips", "black", "skin", "medium"),
    # (eye colour, hair colour): every eye colour once. Hair colours are spread over all the pairs (each in at
    # most two), so that no colour loses much more than a third of its identities.
    ("eyes", "brown", "hair", "grey"),
    ("eyes", "blue", "hair", "brown"),
    ("eyes", "green", "hair", "black"),
    ("eyes", "hazel", "hair", "blonde"),
    ("eyes", "grey", "hair", "red"),
    # (brow colour, hair colour): brows unlike the hair, the case a brow edit makes.
    ("brows", "white", "hair", "black"),
    ("brows", "blue", "hair", "blonde"),
    ("brows", "red", "hair", "grey"),
    ("brows", "black", "hair", "white"),
    # (hair style, hair colour): every style once.
    ("style", "short", "hair", "brown"),
    ("style", "bob", "hair", "purple"),
    ("style", "long", "hair", "green"),
)
"""Attribute pairs never rendered for training, to test that the model composes them. Every value of each pair
still appears in other combinations, so every word is learnt. Together they reject two identities in five of a
uniform draw (redrawn); the rarest hair colour keeps 0.7 of its uniform share."""


def attribute_values(attributes: HeadAttributes) -> dict[str, str]:
    """The value name of every attribute in ``TABLES`` (matching brows named after the hair colour)."""
    values = {key: getattr(attributes, name) for key, name in FIELDS.items()}
    if values["brows"] not in TABLES["brows"]:
        values["brows"] = values["hair"]
    return values


def check_pairs(pairs: tuple[HeldoutPair, ...]) -> None:
    """Raise a ValueError naming the first held-out pair whose attribute or value does not exist."""
    for pair in pairs:
        if len(pair) != 4:
            raise ValueError(f"A held-out pair is (attribute, value, attribute, value), got {pair!r}.")
        for key, value in (pair[:2], pair[2:]):
            if key not in TABLES:
                raise ValueError(f"Unknown attribute {key!r} in held-out pair {pair!r}; choose one of {list(TABLES)}.")
            if value not in TABLES[key]:
                raise ValueError(f"Unknown {key} {value!r} in held-out pair {pair!r}; choose one of {TABLES[key]}.")


def is_heldout(values: Mapping[str, str], pairs: tuple[HeldoutPair, ...]) -> bool:
    """Whether an identity (``attribute_values``) has both values of any of ``pairs``."""
    return any(values.get(a) == va and values.get(b) == vb for a, va, b, vb in pairs)


@dataclass
class HeadDatasetConfig:
    """What to render."""

    num_identities: int = 1600
    """Random identities (1200 for the first model; more now that held-out pairs redraw two identities in five of
    a uniform draw and six attributes, not three, must each be seen in many combinations)."""
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
    heldout_pairs: tuple[HeldoutPair, ...] = HELDOUT_PAIRS
    """(attribute, value, attribute, value) pairs left out of this set; attributes are keys of ``TABLES``."""
    exclude_heldout: bool = True
    """Leave the held-out pairs out (training set); False draws every combination (evaluation set)."""
    brow_contrast_fraction: float = 0.5
    """Share of identities whose brows get a colour other than the hair's; the rest have brows that follow the
    hair. The synth's own draw gives such brows to about a quarter of heads, too few to learn each colour."""
    supersample: int = 2
    """Antialiasing grid at edge pixels (see RenderSettings)."""
    seed: int = 0
    """Seed of identities, instants and cameras."""
    workers: int = 2
    """Processes rendering shards in parallel (each single-threaded; the default suits a 2-core machine)."""

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_identities / self.identities_per_shard)

    def fingerprint(self) -> dict:
        """Everything that decides the rendered content (not ``workers``), as plain JSON values."""
        settings = dataclasses.asdict(self)
        del settings["workers"]
        return {"format": 2, **json.loads(json.dumps(settings))}


@dataclass
class HeadImages:
    """Rendered heads, their semantic labels and the attribute indices (into TABLES) of each image."""

    rgb: np.ndarray
    """(N, H, W, 3) uint8 images on the white backdrop."""
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    """TABLES key -> (N,) int64 indices."""
    azimuth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """(N,) camera azimuth relative to the face, degrees in (-180, 180]."""
    labels: np.ndarray | None = None
    """(N, H, W) uint8 semantic label ids (``avatarstudio_ns.data.labels``) of the pixel centres, or None."""

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def values(self, i: int) -> dict[str, str]:
        """The attribute value names of image i (``attribute_values`` of its identity)."""
        return {key: TABLES[key][int(self.attrs[key][i])] for key in TABLES}

    def attributes(self, i: int) -> HeadAttributes:
        """The identity of image i (head shape not stored: it never appears in captions)."""
        return HeadAttributes(**{FIELDS[key]: value for key, value in self.values(i).items()})

    def images(self) -> torch.Tensor:
        """All images as a float tensor (N, 3, H, W) in [-1, 1], the VAE's range."""
        return torch.from_numpy(self.rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    @staticmethod
    def concat(parts: list[HeadImages]) -> HeadImages:
        has_labels = all(p.labels is not None for p in parts)
        return HeadImages(
            rgb=np.concatenate([p.rgb for p in parts]),
            attrs={k: np.concatenate([p.attrs[k] for p in parts]) for k in TABLES},
            azimuth=np.concatenate([p.azimuth for p in parts]),
            labels=np.concatenate([p.labels for p in parts]) if has_labels else None,
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


def sample_identity(cfg: HeadDatasetConfig, rng: np.random.Generator) -> HeadAttributes:
    """A random identity of the set: the synth's draw, brows recoloured as configured, held-out pairs redrawn."""
    while True:
        attributes = sample_attributes(rng)
        # Drawn every time (not only when used) so that the random stream does not depend on the fraction's use.
        contrast, pick = rng.random(), int(rng.integers(len(HAIR_COLORS) - 1))
        if contrast < cfg.brow_contrast_fraction:
            others = [c for c in HAIR_COLORS if c != attributes.hair_color]
            attributes = attributes.replace(brow_color=others[pick])
        else:
            attributes = attributes.replace(brow_color="match")
        if not cfg.exclude_heldout or not is_heldout(attribute_values(attributes), cfg.heldout_pairs):
            return attributes


def render_shard(cfg: HeadDatasetConfig, shard: int) -> HeadImages:
    """Render one shard; its content depends only on ``cfg`` (not its workers) and ``shard``."""
    rng = np.random.default_rng([cfg.seed, shard])
    # The rig supplies the intrinsics (the capture's framing); the cameras are replaced per identity.
    rig = make_rig(num_cameras=1, resolution=cfg.resolution)
    settings = RenderSettings(supersample=cfg.supersample)
    first = shard * cfg.identities_per_shard
    count = min(cfg.identities_per_shard, cfg.num_identities - first)
    rgbs, labels, azimuths, attrs = [], [], [], {k: [] for k in TABLES}
    for _ in range(count):
        attributes = sample_identity(cfg, rng)
        performance = Performance(seed=int(rng.integers(1, 1_000_000)))
        state = performance.state(float(rng.uniform(0.0, 1.0)))
        c2w, azimuth = _random_cameras(cfg, rng)
        views = render_frame(SynthHead(attributes), dataclasses.replace(rig, camera_to_world=c2w), state, settings)
        rgbs.append((views.rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy())
        labels.append(views.labels.numpy().astype(np.uint8))
        azimuths.append(azimuth)
        for key, value in attribute_values(attributes).items():
            attrs[key] += [TABLES[key].index(value)] * cfg.views_per_identity
    return HeadImages(
        rgb=np.concatenate(rgbs),
        attrs={k: np.array(v, dtype=np.int64) for k, v in attrs.items()},
        azimuth=np.concatenate(azimuths),
        labels=np.concatenate(labels),
    )


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:04d}.npz"


def _save_shard(images: HeadImages, path: Path) -> None:
    """Write a shard atomically: a killed run leaves either the whole file or none."""
    arrays = {"rgb": images.rgb, "azimuth": images.azimuth, **{f"attr_{k}": v for k, v in images.attrs.items()}}
    if images.labels is not None:
        arrays["labels"] = images.labels
    atomic_save(path, lambda tmp: np.savez(tmp, **arrays))


def _load_shard(path: Path) -> HeadImages:
    with np.load(path) as data:
        return HeadImages(
            rgb=data["rgb"],
            attrs={k: data[f"attr_{k}"] for k in TABLES},
            azimuth=data["azimuth"],
            labels=data["labels"] if "labels" in data else None,
        )


def _render_and_save(cfg: HeadDatasetConfig, shard: int, path: Path) -> int:
    _save_shard(render_shard(cfg, shard), path)
    return shard


def _check_cache(cfg: HeadDatasetConfig, folder: Path) -> None:
    """Record the settings in a new cache folder; refuse one rendered with other settings.

    Shards of other settings would otherwise be mixed silently into the set (a resumed run with a changed
    option, or a cache of the first model, whose shards lack labels and brow colours).
    """
    record = folder / "dataset.json"
    wanted = cfg.fingerprint()
    if record.exists():
        found = json.loads(record.read_text())
        if found != wanted:
            changed = sorted(k for k in wanted.keys() | found.keys() if wanted.get(k) != found.get(k))
            raise ValueError(
                f"{folder} holds renders of other settings (differing: {', '.join(changed)}); "
                "use a new work folder or the settings it was rendered with."
            )
        return
    if any(folder.glob("shard_*.npz")):
        raise ValueError(f"{folder} holds renders of an older format (no dataset.json); use a new work folder.")
    atomic_write_bytes(record, (json.dumps(wanted, indent=2) + "\n").encode())


def build_dataset(
    cfg: HeadDatasetConfig,
    folder: Path,
    on_shard: Callable[[int, int], None] | None = None,
    sitting: Sitting | None = None,
) -> HeadImages:
    """Render the missing shards of a dataset into ``folder`` and load the whole set.

    Args:
        cfg: What to render. A folder rendered with other settings is refused (see ``_check_cache``).
        folder: Cache folder (created).
        on_shard: Called with (shards done, shards total) after each shard, e.g. to advance a progress bar.
        sitting: When its time is up, the shards being rendered are finished and saved, the others are left
            for the next run, and :class:`~avatarstudio_ns.builtin.sitting.SittingOver` is raised.

    Returns:
        Every image of the set, in shard order.
    """
    check_pairs(cfg.heldout_pairs)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _check_cache(cfg, folder)
    sitting = sitting or Sitting()
    missing = [s for s in range(cfg.num_shards) if not _shard_path(folder, s).exists()]
    done = cfg.num_shards - len(missing)
    if on_shard:
        on_shard(done, cfg.num_shards)

    def finished() -> None:
        nonlocal done
        done += 1
        if on_shard:
            on_shard(done, cfg.num_shards)

    if missing and cfg.workers > 1:
        with worker_pool(cfg.workers) as pool:
            futures = [pool.submit(_render_and_save, cfg, s, _shard_path(folder, s)) for s in missing]
            for future in futures:
                future.result()
                finished()
                if sitting.over() and done < cfg.num_shards:
                    # Shards already being rendered finish (their files are written whole); the rest wait.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise sitting.stop(f"renders: {done}/{cfg.num_shards} shards")
    else:
        for shard in missing:
            if sitting.over():
                raise sitting.stop(f"renders: {done}/{cfg.num_shards} shards")
            _render_and_save(cfg, shard, _shard_path(folder, shard))
            finished()
    return HeadImages.concat([_load_shard(_shard_path(folder, s)) for s in range(cfg.num_shards)])


CAPTION_ORDER: tuple[str, ...] = ("hair", "skin", "eyes", "brows", "lips")
"""Order of the phrases in a caption (the hair style goes with the hair)."""


def describe(values: Mapping[str, str]) -> str:
    """The caption naming exactly the given attribute values, in the words edit prompts use.

    "photo of a person with long blue hair, dark skin, green eyes, black eyebrows and red lips"; a style without
    a colour is "long hair", the bob style is "... hair in a bob" (it has no adjective).

    Args:
        values: Attribute name (a key of TABLES) -> value name; any subset.
    """
    phrases = []
    for key in CAPTION_ORDER:
        if key == "hair" and ("hair" in values or "style" in values):
            words = [values["hair"]] if "hair" in values else []
            style = values.get("style")
            if style in ("short", "long"):
                words.insert(0, style)
            phrases.append(" ".join([*words, "hair"]) + (" in a bob" if style == "bob" else ""))
        elif key in values:
            noun = {"skin": "skin", "eyes": "eyes", "brows": "eyebrows", "lips": "lips"}[key]
            phrases.append(f"{values[key]} {noun}")
    return caption_of(phrases)


def caption_vocabulary() -> tuple[str, ...]:
    """Every word a training caption can use (``describe`` of any attribute values), in order of first use.

    Recorded in the model folder's ``training.json``, so that prompts can be checked against what the model read.
    """
    captions = [describe({key: value}) for key, values in TABLES.items() for value in values]
    captions.append(describe({"hair": TABLES["hair"][0], "skin": TABLES["skin"][0]}))  # joins phrases with "and"
    return tuple(dict.fromkeys(word for caption in captions for word in prompt_words(caption)))


@dataclass
class CaptionConfig:
    """How often a training caption names each attribute.

    Each phrase is dropped at random, independently, so the model learns every attribute from short prompts
    ("photo of a person with green eyes", as an edit asks) as well as from long ones, and which word goes with
    which region from the captions that name only some.
    """

    p_hair: float = 0.9
    """Probability of naming the hair colour (what edits change most; the first model always named it)."""
    p_style: float = 0.5
    """Probability of naming the hair style."""
    p_skin: float = 0.7
    """Probability of naming the skin tone."""
    p_eyes: float = 0.7
    """Probability of naming the eye colour (visible in fewer images than the others, so named often)."""
    p_lips: float = 0.7
    """Probability of naming the lip colour ("natural lips" included)."""
    p_brows_contrast: float = 0.8
    """Probability of naming the brow colour when it differs from the hair's."""
    p_brows_match: float = 0.2
    """Probability of naming the brow colour when it is the hair's (then it says little)."""
    only_visible: bool = False
    """Name a colour only in images that show its region (``probe.visible_regions`` of the rendered labels: the
    threshold the probe judges samples by). A caption naming the eye colour of a head seen from behind asks the
    model to explain the word with pixels that do not show it; with this, "green eyes" always comes with irises
    in view. But the absence of a face word then says "seen from behind": trained so, prompts naming only hair and
    skin drew the back of the head (held-out eyes 28 -> 46 %, skin 91 -> 75 %; docs/builtin_model.md). False names
    every attribute at its rate whatever the camera sees (the shipped model)."""


def training_caption(
    values: Mapping[str, str],
    generator: torch.Generator,
    cfg: CaptionConfig | None = None,
    shown: Mapping[str, bool] | None = None,
) -> str:
    """A random caption of an identity: each attribute named with its probability in ``cfg``.

    Args:
        values: The identity's ``attribute_values`` (or ``HeadImages.values``).
        generator: Source of the random choices (its state is checkpointed by the trainer). Exactly six numbers
            are drawn per caption, whatever is named.
        cfg: The probabilities; defaults to ``CaptionConfig()``.
        shown: Whether the image shows each colour attribute's region (keys of ``probe.REGIONS``; a missing key
            counts as shown). Needed when ``cfg.only_visible`` is set, ignored otherwise.

    Raises:
        ValueError: ``cfg.only_visible`` is set and ``shown`` is not given.
    """
    cfg = cfg or CaptionConfig()
    if cfg.only_visible and shown is None:
        raise ValueError("CaptionConfig.only_visible needs what the image shows (the renders' label maps).")
    u = torch.rand(6, generator=generator).tolist()
    p_brows = cfg.p_brows_match if values["brows"] == values["hair"] else cfg.p_brows_contrast
    chances = {
        "hair": cfg.p_hair,
        "style": cfg.p_style,
        "skin": cfg.p_skin,
        "eyes": cfg.p_eyes,
        "lips": cfg.p_lips,
        "brows": p_brows,
    }
    if cfg.only_visible:
        chances = {key: p if shown.get(key, True) else 0.0 for key, p in chances.items()}
    return describe({key: values[key] for (key, p), draw in zip(chances.items(), u, strict=True) if draw < p})
