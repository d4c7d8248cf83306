"""Prompt sets: what each edit prompt should change, so ``avatarstudio eval`` can score an edit made with it.

A prompt set is a JSON or YAML file (by its suffix: ``.json``, or ``.yaml`` / ``.yml``)::

    # The caption of the unedited avatar, the start of CLIP's text direction (optional).
    source: photo of a person
    prompts:
      - prompt: photo of a person with blue hair   # the edit prompt, as given to ns-train --prompt
        regions: [hair]                            # what the edit may change: names of labels.REGIONS
        expected: {hair_color: blue}               # a named colour of the synth (attributes.py) ...
      - prompt: photo of a person with green skin
        regions: [skin]
        target_rgb: [0.20, 0.62, 0.25]             # ... and/or an explicit albedo, RGB in [0, 1]
      - prompt: photo of a person with green eyes
        regions: [eyes]                            # identity is measured outside the whole eyes ...
        fidelity_regions: [iris]                   # ... but the colour only on the iris
        expected: {eye_color: green}

Per prompt:

- ``prompt`` (required): the edit prompt; ``avatarstudio eval`` finds an edited avatar's entry by this text
  (case and spacing ignored).
- ``regions`` (required): the regions the edit targets, names of ``avatarstudio_ns.data.labels.REGIONS`` (or single
  label names); identity is measured on the rest of the head.
- ``expected``: one synth attribute and its value, e.g. ``{hair_color: blue}``; the keys are the colour fields of
  ``HeadAttributes`` (hair_color, brow_color, skin_tone, eye_color, lip_color) and the values the names of their
  colour tables. The table is also the palette pixels are classified into.
- ``target_rgb``: the requested albedo, RGB in [0, 1]; overrides the expected attribute's colour. A prompt needs
  ``expected``, ``target_rgb`` or both.
- ``fidelity_regions``: where the colour is measured, default ``regions``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth.attributes import EYE_COLORS, HAIR_COLORS, LIP_COLORS, SKIN_TONES

Color = tuple[float, float, float]

_LIPS = {name: rgb for name, rgb in LIP_COLORS.items() if min(rgb) >= 0.0}  # "natural" is a placeholder, no colour

ATTRIBUTE_PALETTES: dict[str, dict[str, Color]] = {
    "hair_color": HAIR_COLORS,
    "brow_color": HAIR_COLORS,
    "skin_tone": SKIN_TONES,
    "eye_color": EYE_COLORS,
    "lip_color": _LIPS,
}
"""Colour attributes a prompt can expect, with the synth's named albedos for each."""

REGION_PALETTES: dict[str, dict[str, Color]] = {
    "hair": HAIR_COLORS,
    "brows": HAIR_COLORS,
    "skin": SKIN_TONES,
    "eyes": EYE_COLORS,
    "iris": EYE_COLORS,
    "lips": _LIPS,
}
"""Palette that pixels of a region are classified into when a prompt gives only a target_rgb."""

DEFAULT_SOURCE = "photo of a person"
"""Caption of an unedited avatar, where CLIP's text direction starts."""


class PromptSetError(ValueError):
    """A prompt set file that does not follow the format; the message names the file and the entry."""


@dataclass(frozen=True)
class EditPrompt:
    """One edit prompt and what it should change."""

    prompt: str
    """The edit prompt, as given to the edit (``--prompt``)."""
    regions: tuple[str, ...]
    """Regions the edit targets (names of labels.REGIONS or labels.LABELS); identity is measured elsewhere."""
    expected: Mapping[str, str] | None = None
    """One synth colour attribute and its value, e.g. {"hair_color": "blue"}."""
    target_rgb: Color | None = None
    """Requested albedo, RGB in [0, 1]; default: the expected attribute's colour."""
    fidelity_regions: tuple[str, ...] | None = None
    """Where the colour is measured; default: ``regions``."""

    @property
    def measured_regions(self) -> tuple[str, ...]:
        """Regions the colour is measured on."""
        return self.fidelity_regions or self.regions

    @property
    def target_name(self) -> str:
        """Name of the requested colour in ``palette()``: the expected value, else "requested"."""
        if self.expected:
            return next(iter(self.expected.values()))
        return "requested"

    def target_color(self) -> Color:
        """The requested albedo."""
        if self.target_rgb is not None:
            return self.target_rgb
        key, value = next(iter(self.expected.items()))  # type: ignore[union-attr]
        return ATTRIBUTE_PALETTES[key][value]

    def palette(self) -> dict[str, Color]:
        """Named albedos target pixels are classified into; the requested colour is among them."""
        if self.expected:
            table = dict(ATTRIBUTE_PALETTES[next(iter(self.expected))])
        else:
            table = {}
            for region in self.measured_regions:
                table.update(REGION_PALETTES.get(region, {}))
        table[self.target_name] = self.target_color()
        return table

    def to_dict(self) -> dict[str, Any]:
        """The entry as written to a prompt set file (unset fields left out)."""
        out: dict[str, Any] = {"prompt": self.prompt, "regions": list(self.regions)}
        if self.expected:
            out["expected"] = dict(self.expected)
        if self.target_rgb is not None:
            out["target_rgb"] = list(self.target_rgb)
        if self.fidelity_regions:
            out["fidelity_regions"] = list(self.fidelity_regions)
        return out


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass(frozen=True)
class PromptSet:
    """Edit prompts with their targets."""

    prompts: tuple[EditPrompt, ...]
    """The prompts, in file order."""
    source: str = DEFAULT_SOURCE
    """Caption of the unedited avatar (start of the CLIP text direction)."""
    path: Path | None = field(default=None, compare=False)
    """File the set was read from; None for the built-in set."""

    def find(self, prompt: str) -> EditPrompt:
        """The entry of ``prompt`` (case and spacing ignored).

        Raises:
            KeyError: naming the set's file and listing its prompts, when there is no such entry.
        """
        for entry in self.prompts:
            if _normalise(entry.prompt) == _normalise(prompt):
                return entry
        where = self.path if self.path is not None else "the built-in prompt set"
        known = "; ".join(repr(p.prompt) for p in self.prompts)
        raise KeyError(f"{where} has no entry for the prompt {prompt!r}; it has: {known}.")

    def to_dict(self) -> dict[str, Any]:
        """The set as written to a file."""
        return {"source": self.source, "prompts": [p.to_dict() for p in self.prompts]}


DEFAULT_PROMPT_SET = PromptSet(
    prompts=(
        EditPrompt("photo of a person with blue hair", ("hair",), expected={"hair_color": "blue"}),
        EditPrompt("photo of a person with red hair", ("hair",), expected={"hair_color": "red"}),
        EditPrompt("photo of a person with white hair", ("hair",), expected={"hair_color": "white"}),
        # Skin takes a tone the synth knows; the default identity has light skin.
        EditPrompt("photo of a person with dark skin", ("skin",), expected={"skin_tone": "dark"}),
        EditPrompt("photo of a person with pale skin", ("skin",), expected={"skin_tone": "pale"}),
        EditPrompt("photo of a person with green skin", ("skin",), target_rgb=(0.20, 0.62, 0.25)),
        EditPrompt(
            "photo of a person with green eyes", ("eyes",), expected={"eye_color": "green"}, fidelity_regions=("iris",)
        ),
        EditPrompt("photo of a person with red lips", ("lips",), expected={"lip_color": "red"}),
    )
)
"""Built-in prompts: hair colours, skin (named tones and a colour no synth head has), eyes and lips; the edit
suite's prompts, so ``avatarstudio demo`` and ``avatarstudio eval`` measure each of them."""


# ------------------------------------------------------------------------------------------------------ files


def _parse_prompt(raw: Any, where: str) -> EditPrompt:
    def fail(problem: str) -> PromptSetError:
        return PromptSetError(f"{where}: {problem}.")

    if not isinstance(raw, Mapping):
        raise fail(f"an entry must be a mapping with 'prompt' and 'regions', got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"prompt", "regions", "expected", "target_rgb", "fidelity_regions"})
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: prompt, regions, expected, target_rgb, fidelity_regions")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("'prompt' must be a non-empty string")

    def regions(key: str, required: bool) -> tuple[str, ...] | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise fail(f"'{key}' must be a non-empty list of region names ({', '.join(L.REGIONS)})")
        bad = [v for v in value if v not in L.REGIONS and v not in L.LABELS]
        if bad:
            raise fail(f"unknown region(s) {bad} in '{key}'; choose from {sorted(L.REGIONS)} or label names")
        return tuple(value)

    targeted = regions("regions", required=True)
    measured = regions("fidelity_regions", required=False)
    expected = raw.get("expected")
    if expected is not None:
        if not isinstance(expected, Mapping) or len(expected) != 1:
            raise fail(f"'expected' must map one attribute to a value, e.g. {{hair_color: blue}}, got {expected!r}")
        key, value = next(iter(expected.items()))
        if key not in ATTRIBUTE_PALETTES:
            raise fail(f"unknown attribute {key!r} in 'expected'; choose one of {sorted(ATTRIBUTE_PALETTES)}")
        if value not in ATTRIBUTE_PALETTES[key]:
            raise fail(f"unknown {key} {value!r}; choose one of {sorted(ATTRIBUTE_PALETTES[key])}")
        expected = {str(key): str(value)}
    target = raw.get("target_rgb")
    if target is not None:
        if not (
            isinstance(target, list)
            and len(target) == 3
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in target)
            and all(0.0 <= c <= 1.0 for c in target)
        ):
            raise fail(f"'target_rgb' must be three numbers in [0, 1], got {target!r}")
        target = tuple(float(c) for c in target)
    if expected is None and target is None:
        raise fail("the prompt needs 'expected' (e.g. {hair_color: blue}) or 'target_rgb' to be measurable")
    return EditPrompt(
        prompt=prompt,
        regions=targeted,  # type: ignore[arg-type]
        expected=expected,
        target_rgb=target,  # type: ignore[arg-type]
        fidelity_regions=measured,
    )


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def load_prompt_set(path: str | Path) -> PromptSet:
    """Reads a prompt set file (JSON, or YAML for .yaml / .yml).

    Raises:
        PromptSetError: naming the file (and the entry) when it is missing, unreadable or malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PromptSetError(f"The prompt set {path} cannot be read ({err.strerror}).") from None
    if _is_yaml(path):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise PromptSetError(f"The prompt set {path} is not valid YAML ({err}).") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise PromptSetError(
                f"The prompt set {path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})."
            ) from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("prompts"), list) or not raw["prompts"]:
        raise PromptSetError(f"The prompt set {path} must hold a mapping with a non-empty 'prompts' list.")
    unknown = sorted(set(raw) - {"source", "prompts"})
    if unknown:
        raise PromptSetError(f"The prompt set {path} has unknown top-level key(s) {unknown}; allowed: source, prompts.")
    source = raw.get("source", DEFAULT_SOURCE)
    if not isinstance(source, str):
        raise PromptSetError(f"The prompt set {path}: 'source' must be a string, got {source!r}.")
    prompts = []
    for i, entry in enumerate(raw["prompts"]):
        label = entry.get("prompt") if isinstance(entry, Mapping) else None
        prompts.append(_parse_prompt(entry, f"{path}, prompt {i}" + (f" ({label!r})" if label else "")))
    seen: dict[str, int] = {}
    for i, entry in enumerate(prompts):
        key = _normalise(entry.prompt)
        if key in seen:
            raise PromptSetError(f"{path}, prompt {i}: the prompt {entry.prompt!r} repeats prompt {seen[key]}.")
        seen[key] = i
    return PromptSet(prompts=tuple(prompts), source=source, path=path)


def save_prompt_set(prompt_set: PromptSet, path: str | Path) -> Path:
    """Writes ``prompt_set`` as JSON, or YAML for a .yaml / .yml path; ``load_prompt_set`` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_yaml(path):
        path.write_text(yaml.safe_dump(prompt_set.to_dict(), sort_keys=False), encoding="utf-8")
    else:
        path.write_text(json.dumps(prompt_set.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path
