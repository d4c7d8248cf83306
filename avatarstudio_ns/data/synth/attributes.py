"""Attributes of a synthetic identity: named colours, hair style and head shape.

The colour tables map the words a caption uses ("blue hair", "dark skin") to albedos, so a text-to-image
model trained on captioned renders of these heads learns the same vocabulary that edit prompts use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

HAIR_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.045, 0.04),
    "brown": (0.30, 0.17, 0.08),
    "blonde": (0.86, 0.70, 0.40),
    "red": (0.68, 0.20, 0.06),
    "blue": (0.10, 0.28, 0.85),
    "green": (0.12, 0.60, 0.20),
    "pink": (0.95, 0.42, 0.68),
    "purple": (0.48, 0.18, 0.70),
    "white": (0.92, 0.92, 0.90),
    "grey": (0.55, 0.55, 0.55),
}
"""Hair (and brow) colour names to albedo, RGB in [0, 1]."""

SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "pale": (0.96, 0.83, 0.76),
    "light": (0.92, 0.74, 0.62),
    "medium": (0.78, 0.57, 0.42),
    "tan": (0.66, 0.46, 0.32),
    "brown": (0.50, 0.33, 0.22),
    "dark": (0.33, 0.21, 0.14),
}
"""Skin tone names to albedo."""

EYE_COLORS: dict[str, tuple[float, float, float]] = {
    "brown": (0.36, 0.20, 0.08),
    "blue": (0.18, 0.45, 0.85),
    "green": (0.22, 0.58, 0.28),
    "hazel": (0.52, 0.40, 0.16),
    "grey": (0.55, 0.60, 0.66),
}
"""Iris colour names to albedo."""

LIP_COLORS: dict[str, tuple[float, float, float]] = {
    "natural": (-1.0, -1.0, -1.0),  # placeholder: derived from the skin tone, see lip_albedo()
    "red": (0.78, 0.08, 0.14),
    "pink": (0.92, 0.45, 0.58),
    "purple": (0.45, 0.14, 0.42),
    "black": (0.08, 0.06, 0.07),
}
"""Lip colour names to albedo; "natural" is a darker, redder version of the skin."""

HAIR_STYLES: tuple[str, ...] = ("short", "bob", "long")
"""Hair styles: short (above the ears), bob (covers the ears, to the jaw), long (down the back)."""

BROW_MATCH = "match"
"""Brow colour that follows the hair colour (slightly darker)."""


@dataclass(frozen=True)
class HeadAttributes:
    """One identity of the synthetic head world. Colour fields are names from the tables above."""

    hair_color: str = "brown"
    """Hair colour, a key of HAIR_COLORS."""
    skin_tone: str = "light"
    """Skin tone, a key of SKIN_TONES."""
    eye_color: str = "brown"
    """Iris colour, a key of EYE_COLORS."""
    lip_color: str = "natural"
    """Lip colour, a key of LIP_COLORS."""
    brow_color: str = BROW_MATCH
    """Brow colour, a key of HAIR_COLORS or "match" (follows the hair)."""
    hair_style: str = "short"
    """Hair style, one of HAIR_STYLES."""
    head_width: float = 1.0
    """Scale of the head (not the neck) along x, about 0.9 to 1.1."""
    head_height: float = 1.0
    """Scale of the head along y."""
    head_depth: float = 1.0
    """Scale of the head along z (front to back)."""

    def __post_init__(self) -> None:
        tables = {
            "hair_color": HAIR_COLORS,
            "skin_tone": SKIN_TONES,
            "eye_color": EYE_COLORS,
            "lip_color": LIP_COLORS,
            "brow_color": {**HAIR_COLORS, BROW_MATCH: None},
            "hair_style": dict.fromkeys(HAIR_STYLES),
        }
        for name, table in tables.items():
            value = getattr(self, name)
            if value not in table:
                raise ValueError(f"Unknown {name.replace('_', ' ')} {value!r}; choose one of {sorted(table)}.")
        for name in ("head_width", "head_height", "head_depth"):
            if not 0.7 <= getattr(self, name) <= 1.3:
                raise ValueError(f"{name} must lie in [0.7, 1.3], got {getattr(self, name)}.")

    def replace(self, **changes) -> HeadAttributes:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """Plain dict, as written to synth.json."""
        return dataclasses.asdict(self)

    # Albedos, RGB in [0, 1].
    def hair_albedo(self) -> np.ndarray:
        return np.array(HAIR_COLORS[self.hair_color], dtype=np.float32)

    def skin_albedo(self) -> np.ndarray:
        return np.array(SKIN_TONES[self.skin_tone], dtype=np.float32)

    def eye_albedo(self) -> np.ndarray:
        return np.array(EYE_COLORS[self.eye_color], dtype=np.float32)

    def brow_albedo(self) -> np.ndarray:
        if self.brow_color == BROW_MATCH:
            # Brows read a little darker than the hair on the same head.
            return self.hair_albedo() * 0.75
        return np.array(HAIR_COLORS[self.brow_color], dtype=np.float32)

    def lip_albedo(self) -> np.ndarray:
        if self.lip_color == "natural":
            return self.skin_albedo() * np.array([0.85, 0.55, 0.55], dtype=np.float32)
        return np.array(LIP_COLORS[self.lip_color], dtype=np.float32)


DEFAULT_ATTRIBUTES = HeadAttributes()
"""The default identity: short brown hair, light skin, brown eyes, natural lips."""


def sample_attributes(rng: np.random.Generator | int | None = None) -> HeadAttributes:
    """Draw a random identity: uniform over the named colours and styles, mild head-shape jitter.

    Args:
        rng: a numpy Generator or a seed.
    """
    rng = np.random.default_rng(rng)

    def pick(options) -> str:
        return str(options[rng.integers(len(options))])

    return HeadAttributes(
        hair_color=pick(list(HAIR_COLORS)),
        skin_tone=pick(list(SKIN_TONES)),
        eye_color=pick(list(EYE_COLORS)),
        lip_color=pick(list(LIP_COLORS)),
        # Mostly matching brows, as on real faces.
        brow_color=BROW_MATCH if rng.random() < 0.7 else pick(list(HAIR_COLORS)),
        hair_style=pick(list(HAIR_STYLES)),
        head_width=float(rng.uniform(0.93, 1.07)),
        head_height=float(rng.uniform(0.94, 1.06)),
        head_depth=float(rng.uniform(0.94, 1.06)),
    )


CAPTION_PARTS: tuple[str, ...] = ("hair", "skin", "eyes", "lips")
"""The attribute phrases a caption can contain, in caption order."""


def caption(attributes: HeadAttributes, parts: tuple[str, ...] = ("hair", "skin", "eyes")) -> str:
    """Caption of an identity, e.g. "photo of a person with blue hair, dark skin and green eyes".

    Args:
        attributes: the identity.
        parts: which phrases to include, any of CAPTION_PARTS (diffusion training drops some at random).
    """
    phrases = []
    for part in CAPTION_PARTS:
        if part not in parts:
            continue
        if part == "hair":
            style = {"short": "short ", "bob": "", "long": "long "}[attributes.hair_style]
            phrases.append(f"{style}{attributes.hair_color} hair")
        elif part == "skin":
            phrases.append(f"{attributes.skin_tone} skin")
        elif part == "eyes":
            phrases.append(f"{attributes.eye_color} eyes")
        elif part == "lips" and attributes.lip_color != "natural":
            phrases.append(f"{attributes.lip_color} lips")
    return caption_of(phrases)


def caption_of(phrases: list[str]) -> str:
    """ "photo of a person with <a>, <b> and <c>" for the phrases given; "photo of a person" for none."""
    if not phrases:
        return "photo of a person"
    if len(phrases) == 1:
        return f"photo of a person with {phrases[0]}"
    return f"photo of a person with {', '.join(phrases[:-1])} and {phrases[-1]}"
