"""Keyframe selection (METHOD section 2) and the manifest."""

from __future__ import annotations

import pytest
import torch

from avatarstudio_ns.data.keyframes import (
    Keyframe,
    KeyframeSelectionConfig,
    frame_codes_from_checkpoint,
    read_keyframe_manifest,
    select_keyframes,
    with_prompts,
    write_keyframe_manifest,
)


def _synthetic_codes(num_frames: int = 20, dim: int = 4) -> torch.Tensor:
    codes = torch.zeros(num_frames, dim)
    # Deviations from the mean, largest first: 10, 11 (adjacent to 10), 5, 1 (adjacent to frame 0), 15, 16, 18.
    for frame, size in [(10, 9.0), (11, 8.5), (5, 8.0), (1, 7.5), (15, 7.0), (16, 6.5), (18, 6.0)]:
        codes[frame, 0] = size
    return codes - codes.mean(0) + 0.3  # the mean offset must not matter


def test_first_frame_cameras_plus_deviant_nonadjacent_frontal_frames():
    cameras, frames, frontal = range(6), range(20), 3
    available = [(c, t) for c in cameras for t in frames]
    keyframes = select_keyframes(_synthetic_codes(), available, frontal, KeyframeSelectionConfig(n_time=4))
    first = [k for k in keyframes if k.source == "first_frame"]
    timed = [k for k in keyframes if k.source == "time"]
    assert [(k.camera_index, k.timestep_index) for k in first] == [(c, 0) for c in cameras]
    assert [k.timestep_index for k in timed] == [10, 5, 15, 18]  # 11, 1 and 16 are near-duplicates
    assert all(k.camera_index == frontal for k in timed)
    assert timed[0].time == pytest.approx(10 / 19)
    chosen = [0] + [k.timestep_index for k in timed]
    assert all(abs(a - b) > 1 for i, a in enumerate(chosen) for b in chosen[i + 1 :])


def test_gap_ablation_and_frontal_override():
    available = [(c, t) for c in range(3) for t in range(20)]
    codes = _synthetic_codes()
    wide = select_keyframes(codes, available, 1, KeyframeSelectionConfig(n_time=3, min_gap=3))
    assert [k.timestep_index for k in wide if k.source == "time"] == [10, 5, 15]
    frame0_only = select_keyframes(codes, available, 1, KeyframeSelectionConfig(time_aware=False))
    assert len(frame0_only) == 3 and all(k.timestep_index == 0 for k in frame0_only)
    override = select_keyframes(codes, available, None, KeyframeSelectionConfig(n_time=1, frontal_camera=2))
    assert override[-1].camera_index == 2 and override[-1].timestep_index == 10
    with pytest.raises(ValueError, match="frontal"):
        select_keyframes(codes, available, None, KeyframeSelectionConfig(n_time=1))
    # Only frames the frontal camera saw are eligible.
    sparse = [(c, t) for c in range(3) for t in range(20) if not (c == 1 and t == 10)]
    picked = select_keyframes(codes, sparse, 1, KeyframeSelectionConfig(n_time=1))
    assert picked[-1].timestep_index == 11


def test_manifest_round_trip_and_codes_from_checkpoint(tmp_path):
    keyframes = with_prompts([Keyframe(0, 0, 0.0), Keyframe(3, 10, 0.5, source="time")], ["abc", "def"], "woman")
    assert keyframes[1].prompt == "photo of a def woman"
    write_keyframe_manifest(tmp_path / "k.json", keyframes, frontal_camera=3)
    assert read_keyframe_manifest(tmp_path / "k.json") == keyframes
    codes = torch.randn(7, 5)
    torch.save({"step": 3, "pipeline": {"_model.frame_codes.codes": codes}}, tmp_path / "step-3.ckpt")
    assert torch.equal(frame_codes_from_checkpoint(tmp_path / "step-3.ckpt"), codes)
