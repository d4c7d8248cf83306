"""Prompt embeddings computed once and kept, so the text encoder can be released afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor


class TextEmbeddingCache:
    """A prompt -> embedding store in front of a text encoder.

    Args:
        encode: Maps a list of prompts to their embeddings ``[n, tokens, dim]``; ``None`` once the encoder is
            released, after which only cached prompts can be asked for.
    """

    def __init__(self, encode: Callable[[list[str]], Tensor] | None) -> None:
        self.encode = encode
        self._store: dict[str, Tensor] = {}

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._store

    def __len__(self) -> int:
        return len(self._store)

    def precompute(self, prompts: Iterable[str]) -> None:
        """Encode every prompt not cached yet, in one batch."""
        prompts = list(prompts)
        wrong = [p for p in prompts if not isinstance(p, str)]
        if wrong:
            raise TypeError(f"Prompts must be strings, got {wrong[:3]!r}.")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._store))
        if not missing:
            return
        if self.encode is None:
            raise RuntimeError(
                f"The text encoder was released, and these prompts were never encoded: {missing}. "
                "Precompute every prompt before releasing it."
            )
        with torch.no_grad():
            embeddings = self.encode(missing)
        for prompt, embedding in zip(missing, embeddings, strict=True):
            self._store[prompt] = embedding.detach()

    def __call__(self, prompts: str | Sequence[str]) -> Float[Tensor, "n tokens dim"]:
        """Embeddings of one prompt (``[1, tokens, dim]``) or of a list of prompts (``[n, tokens, dim]``)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        self.precompute(prompts)
        return torch.stack([self._store[p] for p in prompts])
