"""Atomic writes: a failed write leaves the old file or folder as it was and nothing temporary behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarstudio_ns.atomic import atomic_save, atomic_write_bytes, atomic_write_folder, atomic_write_text


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a write."""


def test_failed_save_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "state.pt"
    path.write_text("old")

    def half_write(tmp):
        tmp.write_text("half")
        raise Interrupted

    with pytest.raises(Interrupted):
        atomic_save(path, half_write)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_save_replaces_the_file(tmp_path):
    path = tmp_path / "state.pt"
    path.write_text("old")
    assert atomic_save(path, lambda tmp: torch.save({"step": torch.tensor(3)}, tmp)) == path
    assert torch.load(path, weights_only=True)["step"].item() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_save_hands_over_a_name_with_the_destination_suffix(tmp_path):
    # np.savez appends ".npz" to any other name, which would then never be renamed into place.
    path = tmp_path / "nested" / "shard.npz"
    atomic_save(path, lambda tmp: np.savez(tmp, x=np.arange(3)))
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard.npz"]


def test_text_and_bytes_replace_the_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "first ü")
    atomic_write_text(path, "second ü")
    assert path.read_text(encoding="utf-8") == "second ü"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_failed_folder_write_keeps_the_old_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights").write_text("old")

    def half_write(tmp):
        (tmp / "weights").write_text("half")
        raise Interrupted

    with pytest.raises(Interrupted):
        atomic_write_folder(folder, half_write)
    assert (folder / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_folder_write_replaces_the_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "stale").write_text("old")
    atomic_write_folder(folder, lambda tmp: (tmp / "weights").write_text("new"))
    assert sorted(p.name for p in folder.iterdir()) == ["weights"]
    assert (folder / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
