"""Tests of the synthetic head world and ``avatarstudio synth`` (tiny renders, a few seconds in all)."""

from __future__ import annotations

import json
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth import (
    CaptureConfig,
    HeadAttributes,
    SynthHead,
    caption,
    load_canonical_points,
    make_rig,
    render_capture,
    render_views,
    sample_attributes,
)
from avatarstudio_ns.data.synth.canonical import decode_canonical_points, encode_canonical_points
from avatarstudio_ns.data.synth.performance import Performance

NUM_CAMERAS, NUM_FRAMES, RES = 8, 4, 64


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A tiny capture written through the real command line."""
    from avatarstudio_ns.scripts import main as cli

    out = tmp_path_factory.mktemp("synth") / "head"
    argv = ["avatarstudio", "synth", "--output", str(out), "--num-cameras", str(NUM_CAMERAS)]
    argv += ["--num-frames", str(NUM_FRAMES), "--resolution", str(RES), "--no-progress"]
    old = sys.argv
    sys.argv = argv
    try:
        cli.entrypoint()
    finally:
        sys.argv = old
    return out


def _load(out, split):
    return json.loads((out / f"transforms_{split}.json").read_text())


def _read(out, frame, key):
    return iio.imread(out / frame[key])


def test_capture_writes_the_format(capture):
    top_keys = {"fl_x", "fl_y", "cx", "cy", "w", "h", "timestep_indices", "camera_indices", "frontal_camera_index"}
    frame_keys = {"file_path", "transform_matrix", "timestep_index", "camera_index", "fg_mask_path"}
    frame_keys |= {"semantic_path", "canonical_path"}
    holdout = NUM_CAMERAS - 1  # camera 8 does not exist in an 8-camera rig
    for split in ("train", "val", "test"):
        meta = _load(capture, split)
        assert top_keys | {"background_color", "frames"} <= set(meta)
        assert meta["w"] == meta["h"] == RES
        assert meta["background_color"] == [1.0, 1.0, 1.0]
        assert meta["frontal_camera_index"] == NUM_CAMERAS // 2
        assert sorted(meta["timestep_indices"]) == list(range(NUM_FRAMES))
        for frame in meta["frames"]:
            assert frame_keys <= set(frame)
            assert frame["file_path"].endswith(".png")
            c2w = np.array(frame["transform_matrix"])
            assert c2w.shape == (4, 4) and np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-6)
            for key in ("file_path", "fg_mask_path", "semantic_path", "canonical_path"):
                assert (capture / frame[key]).is_file()
        cams = {f["camera_index"] for f in meta["frames"]}
        assert cams == set(meta["camera_indices"])
        if split == "train":
            assert cams == set(range(NUM_CAMERAS)) - {holdout}
            assert len(meta["frames"]) == (NUM_CAMERAS - 1) * NUM_FRAMES
        else:
            assert cams == {holdout}
    synth = json.loads((capture / "synth.json").read_text())
    assert synth["labels"] == L.LABELS
    assert len(synth["performance"]) == NUM_FRAMES
    assert {"jaw_open", "smile", "blink", "yaw_deg", "head_to_world"} <= set(synth["performance"][0])
    assert synth["caption"].startswith("photo of a person with")
    # The camera looks at the head: the frontal camera's -z axis points toward the origin.
    frontal = next(f for f in _load(capture, "train")["frames"] if f["camera_index"] == NUM_CAMERAS // 2)
    c2w = np.array(frontal["transform_matrix"])
    assert c2w[2, 3] > 0.5 and c2w[2, 2] > 0.99


def test_images_masks_labels_line_up(capture):
    for frame in _load(capture, "train")["frames"][:: NUM_FRAMES + 1]:
        rgb = _read(capture, frame, "file_path")
        mask = _read(capture, frame, "fg_mask_path")
        labels = _read(capture, frame, "semantic_path")
        canonical = load_canonical_points(capture / frame["canonical_path"])
        assert rgb.shape == (RES, RES, 3) and mask.shape == (RES, RES) and labels.shape == (RES, RES)
        assert labels.max() <= max(L.LABELS.values())
        # Label 0 exactly where there is no coverage; partial coverage only at antialiased edges.
        assert np.all(labels[mask == 0] == 0)
        assert np.all(labels[mask == 255] != 0)
        assert np.mean((mask > 0) & (mask < 255)) < 0.1
        assert np.all(np.isnan(canonical[labels == 0])) and np.all(np.isfinite(canonical[labels != 0]))
        # The background is the white backdrop.
        assert np.all(rgb[mask == 0] == 255)
        assert 0.1 < np.mean(mask > 0) < 0.9


def test_head_moves_over_time(capture):
    frames = [f for f in _load(capture, "train")["frames"] if f["camera_index"] == NUM_CAMERAS // 2]
    assert sorted(f["timestep_index"] for f in frames) == list(range(NUM_FRAMES))
    frames = sorted(frames, key=lambda f: f["timestep_index"])
    images = [_read(capture, f, "file_path").astype(np.float32) for f in frames]
    for a in range(NUM_FRAMES):
        for b in range(a + 1, NUM_FRAMES):
            assert np.abs(images[a] - images[b]).mean() > 1.0


def test_frontal_camera_sees_the_face(capture):
    frames = {(f["camera_index"], f["timestep_index"]): f for f in _load(capture, "train")["frames"]}
    front = _read(capture, frames[(NUM_CAMERAS // 2, 0)], "semantic_path")
    for label in (L.SKIN, L.HAIR, L.SCLERA, L.IRIS, L.LIPS, L.NECK):
        assert np.any(front == label), f"frontal view lacks label {label}"
    back = _read(capture, frames[(0, 0)], "semantic_path")
    assert not np.any(np.isin(back, [L.IRIS, L.LIPS]))
    assert np.mean(back == L.HAIR) > np.mean(front == L.HAIR)


def test_attributes_change_colours():
    rig = make_rig(8, 48)
    rig.camera_to_world = rig.camera_to_world[[rig.frontal_camera_index]]
    colours = {}
    for hair in ("blue", "blonde"):
        head = SynthHead(HeadAttributes(hair_color=hair, eye_color="green"))
        views = render_views(head, rig, [0.0])
        hair_pixels = views.rgb[views.labels == L.HAIR]
        assert hair_pixels.shape[0] > 20
        colours[hair] = hair_pixels.mean(0)
    blue, blonde = colours["blue"], colours["blonde"]
    assert blue[2] > blue[0] + 0.15 and blonde[0] > blonde[2] + 0.15


def test_sampling_and_captions():
    a, b = sample_attributes(3), sample_attributes(3)
    assert a == b
    assert len({sample_attributes(s) for s in range(12)}) > 6
    text = caption(HeadAttributes(hair_color="blue", skin_tone="dark", eye_color="green", hair_style="bob"))
    assert text == "photo of a person with blue hair, dark skin and green eyes"
    with pytest.raises(ValueError, match="hair color"):
        HeadAttributes(hair_color="plaid")


def test_holdout_camera_default():
    assert CaptureConfig(num_cameras=24).holdout() == 8
    assert CaptureConfig(num_cameras=8).holdout() == 7
    assert CaptureConfig(num_cameras=24, holdout_camera=3).holdout() == 3


def test_bounds_contain_every_head():
    grid = torch.linspace(-0.25, 0.25, 40)
    x, y, z = (g.reshape(-1) for g in torch.meshgrid(grid, grid, grid, indexing="ij"))
    state = Performance().state(0.7)
    for style in ("short", "bob", "long"):
        head = SynthHead(HeadAttributes(hair_style=style, head_width=1.1, head_height=1.1, head_depth=1.1))
        with torch.no_grad():
            inside = head.sdf(x, y, z, state) < 0
        covered = torch.zeros_like(inside)
        for center, radii in head.bounds():
            r = sum(((c - torch.tensor(o)) / rr) ** 2 for c, o, rr in zip((x, y, z), center, radii, strict=True))
            covered |= r < 1.0
        assert inside.any() and not (inside & ~covered).any(), style


def test_canonical_encoding_round_trip():
    points = np.random.default_rng(0).uniform(-0.2, 0.2, size=(5, 7, 3)).astype(np.float32)
    points[1, 2] = np.nan
    decoded = decode_canonical_points(encode_canonical_points(points))
    assert np.all(np.isnan(decoded[1, 2]))
    assert np.nanmax(np.abs(decoded - points)) < 1e-5


def test_a_non_square_capture_from_the_command_line_loads_through_the_dataparser(tmp_path):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
    from avatarstudio_ns.data.dataset import AvatarDataset
    from avatarstudio_ns.scripts import main as cli

    out = tmp_path / "wide"
    argv = ["avatarstudio", "synth", "--output", str(out), "--num-cameras", "2", "--num-frames", "1"]
    argv += ["--width", "48", "--height", "32", "--no-progress"]
    old, sys.argv = sys.argv, argv
    try:
        cli.entrypoint()
    finally:
        sys.argv = old
    meta = _load(out, "train")
    assert (meta["w"], meta["h"]) == (48, 32)
    # Square pixels, the head as large as in a 32 px square capture, the principal point in the middle.
    assert meta["fl_x"] == meta["fl_y"] == make_rig(2, resolution=32).fx
    assert (meta["cx"], meta["cy"]) == (24.0, 16.0)
    train = AvatarStudioDataParserConfig(data=out).setup().get_dataparser_outputs("train")
    assert (int(train.cameras.width[0, 0]), int(train.cameras.height[0, 0])) == (48, 32)
    item = AvatarDataset(train)[0]
    assert item["image"].shape == (32, 48, 3) and item["fg_mask"].shape == (32, 48, 1)
    # The whole head is in view: its mask keeps off the sides and the top (the neck may leave at the bottom).
    head = item["fg_mask"][..., 0] > 0
    assert head.any() and not head[:, 0].any() and not head[:, -1].any() and not head[0].any()


def test_test_frames_divide_the_sequence_as_vhap_does(tmp_path, capsys):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig

    out = render_capture(
        CaptureConfig(output=tmp_path / "c", num_cameras=3, num_frames=4, test_frames=2, resolution=8, progress=False)
    )
    train, val, test = (_load(out, split) for split in ("train", "val", "test"))
    assert {f["timestep_index"] for f in train["frames"]} == {f["timestep_index"] for f in val["frames"]} == {0, 1}
    assert sorted((f["timestep_index"], f["camera_index"]) for f in test["frames"]) == [
        (t, c) for t in (2, 3) for c in range(3)
    ]
    parser = AvatarStudioDataParserConfig(data=out).setup()
    parser.get_dataparser_outputs("train")
    capsys.readouterr()
    outputs = parser.get_dataparser_outputs("test")
    assert outputs.metadata["num_timesteps"] == 4
    # Said once, in words: what the avatar shows at the timesteps training never saw.
    assert "2 timestep(s) no training image shows (2..3)" in " ".join(capsys.readouterr().out.split())
    assert torch.allclose(outputs.cameras.times[:, 0], torch.tensor([2 / 3] * 3 + [1.0] * 3))
    with pytest.raises(ValueError, match="--test-frames 4 leaves no frame"):
        render_capture(CaptureConfig(output=tmp_path / "d", num_cameras=3, num_frames=4, test_frames=4, resolution=8))
