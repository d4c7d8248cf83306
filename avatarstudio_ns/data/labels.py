"""Semantic label ids of the synthetic head world.

The synth capture writes one 8-bit PNG per image whose pixel values are these ids. Edits are scored
per region with them (prompt fidelity on the target region, identity on the rest).
"""

from __future__ import annotations

BACKGROUND = 0
SKIN = 1
HAIR = 2
BROWS = 3
SCLERA = 4
IRIS = 5
PUPIL = 6
LIPS = 7
MOUTH_INTERIOR = 8
EARS = 9
NECK = 10

LABELS: dict[str, int] = {
    "background": BACKGROUND,
    "skin": SKIN,
    "hair": HAIR,
    "brows": BROWS,
    "sclera": SCLERA,
    "iris": IRIS,
    "pupil": PUPIL,
    "lips": LIPS,
    "mouth_interior": MOUTH_INTERIOR,
    "ears": EARS,
    "neck": NECK,
}
"""Label name to id, in id order."""

REGIONS: dict[str, tuple[int, ...]] = {
    "hair": (HAIR,),
    "skin": (SKIN, EARS, NECK),
    "eyes": (SCLERA, IRIS, PUPIL),
    "iris": (IRIS,),
    "lips": (LIPS,),
    "brows": (BROWS,),
    "face": (SKIN, BROWS, SCLERA, IRIS, PUPIL, LIPS, MOUTH_INTERIOR, EARS),
    "head": tuple(i for i in range(1, NECK + 1)),
}
"""Named regions an edit can target, as sets of label ids."""
