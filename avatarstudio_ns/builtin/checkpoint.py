"""Training state of the built-in model's stages, written atomically so that a killed run never leaves a
half-written file where a resumed run would read it; and starting weights read from a finished model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from avatarstudio_ns.atomic import atomic_save


def save_state(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically.

    Keep ``state`` to tensors, numbers, strings and containers of them: it is read back with
    ``torch.load(weights_only=True)``.
    """
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def copy_weights(module: torch.nn.Module, cls: Any, folder: Path, option: str) -> list[str]:
    """Copy the weights of the network saved in ``folder`` (read with ``cls.from_pretrained``) into ``module``.

    ``module`` may have cross-attention transformers that the saved network lacks (a UNet given attention at more
    levels, ``--model.unet-attention``): everything else is copied and each new transformer starts as the identity
    (its output projection zeroed; the block adds it to its input), so the grown network computes what the saved
    one did and training adds the new attention from there.

    Returns:
        The names of the transformers that start as the identity (empty when the networks match).

    Raises:
        ValueError: The saved network has other sizes, or weights ``module`` lacks; names ``option``, the setting
            that pointed there.
    """
    saved = cls.from_pretrained(folder).state_dict()
    own = module.state_dict()
    modules = dict(module.named_modules())
    new = sorted({_transformer_of(key) for key in own.keys() - saved.keys()}, key=str)
    try:
        if saved.keys() - own.keys() or any(name is None or f"{name}.proj_out" not in modules for name in new):
            module.load_state_dict(saved)  # raises, naming the keys that differ
        module.load_state_dict(saved, strict=False)
    except RuntimeError as err:
        raise ValueError(
            f"{option}: {folder} has other sizes than this run's (--model.* options); give the sizes it was trained "
            f"with ({Path(folder) / 'config.json'}).\n{err}"
        ) from err
    with torch.no_grad():
        for name in new:
            modules[f"{name}.proj_out"].weight.zero_()
            modules[f"{name}.proj_out"].bias.zero_()
    return new


def _transformer_of(key: str) -> str | None:
    """``down_blocks.0.attentions.1`` for a weight inside that cross-attention transformer, else None."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "attentions" and parts[i + 1].isdigit():
            return ".".join(parts[: i + 2])
    return None


def copy_coarser_levels(unet: UNet2DConditionModel, folder: Path, option: str) -> int:
    """Start ``unet`` from the saved UNet in ``folder`` that lacks its finest levels.

    ``unet``'s block widths are the saved ones with finer levels in front (e.g. a 32x32 level added to a 16x16
    UNet for a finer latent): the saved down blocks become its coarser down blocks, its up blocks (coarsest first)
    and middle block take the saved ones in the same order, and the timestep MLP's second layer carries over. What
    has no counterpart or another shape (the new levels, the input and output convolutions, the ResNets where a
    new level's skip connection arrives) keeps its fresh weights and is learnt from there.

    Returns:
        How many of ``unet``'s weights were copied.

    Raises:
        ValueError: The saved widths are not ``unet``'s coarser ones; names ``option``.
    """
    saved_unet = UNet2DConditionModel.from_pretrained(folder)
    saved_widths = list(saved_unet.config.block_out_channels)
    widths = list(unet.config.block_out_channels)
    extra = len(widths) - len(saved_widths)
    if extra < 1 or widths[extra:] != saved_widths:
        raise ValueError(
            f"{option}: the UNet in {folder} has block widths {saved_widths}; this run's ({widths}) must be those "
            "with finer levels in front (--model.unet-channels)."
        )
    own = unet.state_dict()
    copied = {}
    for key, value in saved_unet.state_dict().items():
        if key.startswith("down_blocks."):
            index, rest = key.removeprefix("down_blocks.").split(".", 1)
            key = f"down_blocks.{int(index) + extra}.{rest}"
        elif not key.startswith(("up_blocks.", "mid_block.", "time_embedding.linear_2.")):
            continue
        if key in own and own[key].shape == value.shape:
            copied[key] = value
    unet.load_state_dict(copied, strict=False)
    return len(copied)
