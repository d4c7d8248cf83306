"""LoRA adapters on the UNet's attention projections (peft), saved in the file layout diffusers loads.

The personalised model is the base UNet plus one adapter, so base and personalised predictions come from
one set of weights with the adapter switched off or on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import safetensors.torch
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from avatarstudio_ns.atomic import atomic_write_bytes

LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
"""UNet attention projections that get a LoRA (self- and cross-attention)."""
PERSONAL_ADAPTER = "personal"
"""Adapter name of the personalisation."""
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""File name ``pipe.load_lora_weights(folder)`` looks for."""


def add_lora(
    unet: UNet2DConditionModel,
    rank: int = 4,
    alpha: float | None = None,
    adapter_name: str = PERSONAL_ADAPTER,
    targets: tuple[str, ...] = LORA_TARGETS,
) -> list[torch.nn.Parameter]:
    """Inject a trainable LoRA into ``unet`` (the base weights stay frozen) and return its parameters.

    The LoRA parameters are kept in fp32 even on a half-precision UNet, so Adam's small updates are not
    rounded away.
    """
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets))
    unet.requires_grad_(False)
    unet.add_adapter(config, adapter_name=adapter_name)
    params = [p for n, p in unet.named_parameters() if f".{adapter_name}." in n and "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def lora_state_dict(unet: UNet2DConditionModel, adapter_name: str = PERSONAL_ADAPTER) -> dict[str, torch.Tensor]:
    """The adapter's weights with peft's key names (adapter name stripped)."""
    state = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def set_lora_state_dict(unet: UNet2DConditionModel, state: dict[str, torch.Tensor], adapter_name: str) -> None:
    """Load weights saved by :func:`lora_state_dict` into an adapter of the same shape."""
    result = set_peft_model_state_dict(unet, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"LoRA weights do not fit the UNet: unexpected keys {unexpected[:3]}...")


def save_lora(unet: UNet2DConditionModel, folder: Path, adapter_name: str = PERSONAL_ADAPTER) -> Path:
    """Write the adapter as ``pytorch_lora_weights.safetensors`` (atomically), loadable by plain diffusers.

    Keys carry the ``unet.`` prefix and the adapter config travels in the safetensors metadata, as
    ``StableDiffusionPipeline.save_lora_weights`` writes them, so ``pipe.load_lora_weights(folder)`` works.
    """
    state = {f"unet.{k}": v for k, v in lora_state_dict(unet, adapter_name).items()}
    config = unet.peft_config[adapter_name].to_dict()
    config = {f"unet.{k}": (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    metadata = {"format": "pt", LORA_ADAPTER_METADATA_KEY: json.dumps(config, indent=2, sort_keys=True, default=str)}
    path = Path(folder) / LORA_WEIGHT_NAME
    atomic_write_bytes(path, safetensors.torch.save(state, metadata=metadata))
    return path


def load_lora(unet: UNet2DConditionModel, folder: Path, adapter_name: str = PERSONAL_ADAPTER) -> None:
    """Load a LoRA written by :func:`save_lora` (or by diffusers) into ``unet`` as ``adapter_name``."""
    unet.load_lora_adapter(
        str(folder), weight_name=LORA_WEIGHT_NAME, prefix="unet", adapter_name=adapter_name, local_files_only=True
    )
    unet.requires_grad_(False)


@contextmanager
def adapters_disabled(unet: UNet2DConditionModel) -> Iterator[None]:
    """Run the base model: switch the UNet's adapters off for the duration (no-op without adapters)."""
    has_adapters = bool(getattr(unet, "peft_config", None))
    if has_adapters:
        unet.disable_adapters()
    try:
        yield
    finally:
        if has_adapters:
            unet.enable_adapters()
