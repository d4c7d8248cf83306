"""Training state of the built-in model's stages, written atomically so that a killed run never leaves a
half-written file where a resumed run would read it; and starting weights read from a finished model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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


def copy_weights(module: torch.nn.Module, cls: Any, folder: Path, option: str) -> None:
    """Copy the weights of the network saved in ``folder`` (read with ``cls.from_pretrained``) into ``module``.

    Raises:
        ValueError: The saved network has other sizes; names ``option``, the setting that pointed there.
    """
    try:
        module.load_state_dict(cls.from_pretrained(folder).state_dict())
    except RuntimeError as err:
        raise ValueError(
            f"{option}: {folder} has other sizes than this run's (--model.* options); give the sizes it was trained "
            f"with ({Path(folder) / 'config.json'}).\n{err}"
        ) from err
