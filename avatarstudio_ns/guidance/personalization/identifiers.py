"""Rare identifiers and prompts for personalisation (METHOD section 3).

Every keyframe gets its own identifier, so the personalised model can be asked for one specific view and
expression; the DreamBooth ablation shares one identifier among all keyframes.
"""

from __future__ import annotations

import random
from typing import Literal

ClassNoun = Literal["man", "woman", "person"]
CLASS_NOUNS: tuple[str, ...] = ("man", "woman", "person")

# Consonants only: strings of them are not words in any prompt vocabulary, so they tokenise into rare pieces.
_ALPHABET = "bcdfghjklmnpqrstvwxz"


def make_identifiers(count: int, seed: int = 0, length: int = 10, shared: bool = False) -> list[str]:
    """Unique random identifiers, deterministic for a seed.

    Args:
        count: How many (one per keyframe).
        seed: Random seed; the same seed gives the same identifiers.
        length: Characters per identifier (the paper: 10).
        shared: DreamBooth ablation: return the same identifier ``count`` times.

    Returns:
        ``count`` identifiers, pairwise distinct unless ``shared``.
    """
    rng = random.Random(f"avatarstudio-identifiers-{seed}-{length}")
    if shared:
        return ["".join(rng.choice(_ALPHABET) for _ in range(length))] * count
    chosen: list[str] = []
    seen: set[str] = set()
    while len(chosen) < count:
        candidate = "".join(rng.choice(_ALPHABET) for _ in range(length))
        if candidate not in seen:
            seen.add(candidate)
            chosen.append(candidate)
    return chosen


def identifier_prompt(identifier: str, class_noun: str = "person") -> str:
    """The keyframe prompt P_i = "photo of a [id_i] [class noun]"."""
    return f"photo of a {identifier} {class_noun}"


def class_prompt(class_noun: str = "person") -> str:
    """The prior-preservation prompt "photo of a [class noun]"."""
    return f"photo of a {class_noun}"
