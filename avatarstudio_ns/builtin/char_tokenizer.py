"""A CLIP byte-level BPE vocabulary built locally, with every single character as a token.

Stable Diffusion's tokenizer is a CLIP BPE tokenizer read from ``vocab.json`` and ``merges.txt``. The small
models this package writes need the same files but cannot download OpenAI's vocabulary, so we build one:
the 256 byte symbols (alone and as word ends, ``"x</w>"``) make ANY word tokenisable, character by
character, including the random keyframe identifiers; a few whole words get their own tokens through merges.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from avatarstudio_ns.atomic import atomic_write_text

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# Words of the prompts this project writes; everything else falls back to characters.
DEFAULT_WORDS: tuple[str, ...] = (
    "photo",
    "of",
    "a",
    "man",
    "woman",
    "person",
    "with",
    "hair",
    "skin",
    "eyes",
    "lips",
    "blue",
    "red",
    "green",
    "blonde",
    "black",
    "white",
    "brown",
    "pink",
    "purple",
    "beard",
    "glasses",
    "hat",
)


def byte_symbols() -> list[str]:
    """The 256 printable symbols that stand for bytes in byte-level BPE (the GPT-2 / CLIP mapping).

    Printable Latin-1 bytes stand for themselves; the others are shifted past 255 so that no symbol is
    whitespace or a control character.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + shift)
            shift += 1
    return [symbols[b] for b in range(256)]


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Run BPE on one word: repeatedly merge the adjacent pair with the lowest rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols[:-1], symbols[1:], strict=False))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        _, i = min(ranked)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def build_vocab(words: Sequence[str] = DEFAULT_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Build a CLIP-layout vocabulary: bytes, bytes as word ends, whole-word merges, then the special tokens.

    Args:
        words: Lower-case ASCII words that should each become a single token.

    Returns:
        The token -> id mapping and the ordered merge list.
    """
    base = byte_symbols()
    vocab_tokens = base + [s + END_OF_WORD for s in base]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
        # A new merge ranks after every earlier one, so words already finished keep their single token.
        while len(symbols := _apply_merges(symbols, ranks)) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab_tokens.append(pair[0] + pair[1])
    vocab_tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {}
    for token in vocab_tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def write_tokenizer(folder: Path, words: Sequence[str] = DEFAULT_WORDS, max_length: int = 77) -> int:
    """Write ``vocab.json``, ``merges.txt`` and the configs that ``CLIPTokenizer.from_pretrained`` reads.

    Args:
        folder: The tokenizer folder (created).
        words: Whole words to add as single tokens.
        max_length: The tokenizer's ``model_max_length`` (prompts are padded to it).

    Returns:
        The vocabulary size.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    # Each file atomically: train-builtin rewrites its work folder's tokenizer at every start, and a kill mid-write
    # left a cut vocab.json there.
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    atomic_write_text(folder / "merges.txt", "\n".join(lines) + "\n")
    specials = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(specials, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True, **specials}
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2))
    return len(vocab)
