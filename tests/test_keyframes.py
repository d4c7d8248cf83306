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
    write_keyframe_manifest,
)


def _synthetic_codes(num_frames: int = 20, dim: int = 4) -> torch.Tensor:
    codes = torch.zeros(num_frames, dim)
    # Deviations from the mean, largest first: 10, 11 (adjacent to 10), 5, 1 (adjacent to frame 0), 15, 16, 18.
    for frame, size in [(10, 9.0), (11, 8.5), (5, 8.0), (1, 7.5), (15, 7.0), (16, 6.5), (18, 6.0)]:
        codes[frame, 0] = size
    return codes - codes.mean(0) + 0.3  # the mean offset must not matter


def test_the_papers_rule_first_frame_cameras_plus_deviant_nonadjacent_frontal_frames():
    cameras, frames, frontal = range(6), range(20), 3
    available = [(c, t) for c in cameras for t in frames]
    paper = KeyframeSelectionConfig(n_time=4, rule="deviant")
    keyframes = select_keyframes(_synthetic_codes(), available, frontal, paper)
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
    wide = select_keyframes(codes, available, 1, KeyframeSelectionConfig(n_time=3, min_gap=3, rule="deviant"))
    assert [k.timestep_index for k in wide if k.source == "time"] == [10, 5, 15]
    frame0_only = select_keyframes(codes, available, 1, KeyframeSelectionConfig(time_aware=False))
    assert len(frame0_only) == 3 and all(k.timestep_index == 0 for k in frame0_only)
    override = KeyframeSelectionConfig(n_time=1, frontal_camera=2, rule="deviant")
    override = select_keyframes(codes, available, None, override)
    assert override[-1].camera_index == 2 and override[-1].timestep_index == 10
    with pytest.raises(ValueError, match="frontal"):
        select_keyframes(codes, available, None, KeyframeSelectionConfig(n_time=1))
    # Only frames the frontal camera saw are eligible.
    sparse = [(c, t) for c in range(3) for t in range(20) if not (c == 1 and t == 10)]
    picked = select_keyframes(codes, sparse, 1, KeyframeSelectionConfig(n_time=1, rule="deviant"))
    assert picked[-1].timestep_index == 11


def _long_performance(num_frames: int = 300) -> tuple[torch.Tensor, dict[str, range]]:
    """Codes of a long capture: one strong, slow expression (a wide-open mouth over 40 frames) and four weaker,
    different ones (each its own code direction), with the neutral face in between."""
    codes = torch.zeros(num_frames, 6)
    events = {"jaw": range(100, 140), "smile": range(20, 30), "blink": range(200, 204), "turn": range(240, 260)}
    events["nod"] = range(60, 70)
    for dim, (name, frames) in enumerate(events.items()):
        strength = 6.0 if name == "jaw" else 4.0
        centre, half = (frames.start + frames.stop - 1) / 2, len(frames) / 2
        for t in frames:
            codes[t, dim] = strength * (1.0 - abs(t - centre) / (half + 1))
    return codes, events


def test_time_keyframes_cover_every_expression_of_a_long_performance():
    """The default rule spreads the time keyframes over the performance's distinct expressions; the paper's rule
    (farthest from the mean, neighbours skipped) puts them all on the one strong expression."""
    codes, events = _long_performance()
    available = [(c, t) for c in range(2) for t in range(codes.shape[0])]
    keyframes = select_keyframes(codes, available, 1, KeyframeSelectionConfig(n_time=5))
    chosen = [k.timestep_index for k in keyframes if k.source == "time"]
    assert len(chosen) == 5
    for name, frames in events.items():
        assert any(t in frames for t in chosen), f"no time keyframe shows the {name}: {chosen}"
    paper = select_keyframes(codes, available, 1, KeyframeSelectionConfig(n_time=5, rule="deviant"))
    assert all(k.timestep_index in events["jaw"] for k in paper if k.source == "time")


def test_farthest_frames_respect_the_gap_and_the_frontal_cameras_frames():
    codes, events = _long_performance()
    available = [(c, t) for c in range(2) for t in range(codes.shape[0]) if not (c == 1 and t in events["blink"])]
    keyframes = select_keyframes(codes, available, 1, KeyframeSelectionConfig(n_time=8, min_gap=5))
    chosen = [0] + [k.timestep_index for k in keyframes if k.source == "time"]
    assert len(chosen) == 9 and not any(t in events["blink"] for t in chosen)
    assert all(abs(a - b) > 5 for i, a in enumerate(chosen) for b in chosen[i + 1 :])


def test_manifest_round_trip_and_codes_from_checkpoint(tmp_path):
    keyframes = [
        Keyframe(0, 0, 0.0, identifier="abc", prompt="photo of a abc woman"),
        Keyframe(3, 10, 0.5, source="time", identifier="def", prompt="photo of a def woman"),
    ]
    write_keyframe_manifest(tmp_path / "k.json", keyframes, frontal_camera=3)
    assert read_keyframe_manifest(tmp_path / "k.json") == keyframes
    codes = torch.randn(7, 5)
    torch.save({"step": 3, "pipeline": {"_model.frame_codes.codes": codes}}, tmp_path / "step-3.ckpt")
    assert torch.equal(frame_codes_from_checkpoint(tmp_path / "step-3.ckpt"), codes)
