"""Read a personalisation folder back: the personalised UNet and its keyframe prompts.

Folder layout (written by :mod:`avatarstudio_ns.guidance.personalization.finetune`)::

    personalization.json               cache key, mode, base model, settings, completion; whose it is (the base
                                       model's weights and each keyframe image, hashed)
    keyframes.json                     the keyframe manifest (identifier and prompt per keyframe)
    keyframes/000.png ...              the keyframe images trained on
    pytorch_lora_weights.safetensors   mode lora: pipe.load_lora_weights(folder) loads it
    unet/                              mode full: UNet2DConditionModel.from_pretrained(folder / "unet")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from diffusers import UNet2DConditionModel

from avatarstudio_ns.data.keyframes import Keyframe, read_keyframe_manifest
from avatarstudio_ns.guidance.adapters import PERSONAL_ADAPTER, load_lora
from avatarstudio_ns.guidance.loading import DiffusionModel

logger = logging.getLogger(__name__)

INFO_NAME = "personalization.json"
MANIFEST_NAME = "keyframes.json"


def read_personalization_info(folder: Path) -> dict | None:
    """The folder's ``personalization.json``, or None when there is none."""
    path = Path(folder) / INFO_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def is_complete(folder: Path, cache_key: str | None = None) -> bool:
    """Whether ``folder`` holds a finished personalisation (with the given cache key, when one is given)."""
    info = read_personalization_info(folder)
    return bool(info and info.get("complete") and (cache_key is None or info.get("cache_key") == cache_key))


@dataclass
class PersonalizedModel:
    """The personalised UNet and the keyframes it knows."""

    unet: UNet2DConditionModel
    """The UNet to call: the base UNet with the ``personal`` adapter (lora), or a separate UNet (full)."""
    keyframes: list[Keyframe]
    """Keyframes in manifest order; ``keyframe_ids`` of the guidance index this list."""
    mode: str
    """``lora`` or ``full``."""
    adapter_name: str | None = None
    """Name of the LoRA adapter on the shared UNet (lora mode)."""

    @property
    def prompts(self) -> list[str]:
        """The identifier prompt of each keyframe."""
        return [k.prompt for k in self.keyframes]

    def active(self):
        """Context in which ``unet`` runs as the personalised model (enables the adapter in lora mode)."""
        return self._adapter_on() if self.adapter_name else nullcontext()

    @contextmanager
    def _adapter_on(self) -> Iterator[None]:
        self.unet.enable_adapters()
        self.unet.set_adapter(self.adapter_name)
        yield


def load_personalization(folder: Path, base: DiffusionModel, adapter_name: str = PERSONAL_ADAPTER) -> PersonalizedModel:
    """Load a finished personalisation for use beside ``base``.

    In lora mode the adapter is added to ``base.unet`` (one UNet serves both models; the guidance switches
    the adapter off for base predictions). In full mode a second UNet is loaded.

    Raises:
        FileNotFoundError: the folder holds no finished personalisation.
    """
    folder = Path(folder)
    info = read_personalization_info(folder)
    if not info or not info.get("complete"):
        raise FileNotFoundError(
            f"{folder} holds no finished personalisation; run `avatarstudio personalize --output {folder}` first."
        )
    if info.get("base_model") not in (None, base.source):
        logger.warning("Personalisation %s was trained on %s, used with %s.", folder, info["base_model"], base.source)
    keyframes = read_keyframe_manifest(folder / MANIFEST_NAME)
    if info["mode"] == "lora":
        load_lora(base.unet, folder, adapter_name)
        return PersonalizedModel(unet=base.unet, keyframes=keyframes, mode="lora", adapter_name=adapter_name)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=base.dtype, local_files_only=True)
    unet.to(base.device).requires_grad_(False).eval()
    return PersonalizedModel(unet=unet, keyframes=keyframes, mode="full")
