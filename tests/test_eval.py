"""Tests of ``avatarstudio eval``: the edit metrics on synthetic renders, prompt sets, and the rendering path on a tiny
synth capture with stand-in models (no training; a few seconds in all)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth import HAIR_COLORS, SynthHead, make_rig, render_views
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import EvalSettings, collect_views, evaluate, measure_edit, write_report
from avatarstudio_ns.eval.prompt_set import (
    DEFAULT_PROMPT_SET,
    EditPrompt,
    PromptSet,
    PromptSetError,
    load_prompt_set,
    save_prompt_set,
)

BLUE_SHIFT = np.array([-0.05, 0.05, 0.45])
"""A constant edit of brown hair toward blue that keeps every shaded hair colour inside [0, 1]."""


@pytest.fixture(scope="module")
def scene():
    """The default head (brown hair) from 4 cameras at 3 times, in memory."""
    views = render_views(SynthHead(), make_rig(num_cameras=4, resolution=48), [0.0, 0.5, 1.0])
    num_times, num_cameras = views.rgb.shape[:2]
    return {
        "rgb": views.rgb.reshape(-1, 48, 48, 3).numpy().astype(np.float64),
        "labels": views.labels.reshape(-1, 48, 48).numpy(),
        "canonical": views.canonical.reshape(-1, 48, 48, 3).numpy(),
        "times": np.repeat(np.arange(num_times), num_cameras),
        "cameras": np.tile(np.arange(num_cameras), num_times),
    }


def _hair_edit(scene, per_image_shift):
    hair = M.region_mask(scene["labels"], ["hair"])
    edited = scene["rgb"].copy()
    for i in range(len(edited)):
        edited[i][hair[i]] += per_image_shift(i)
    return edited


def _flicker(scene, edited, regions=("hair",), voxel_size=0.01):
    mask = M.region_mask(scene["labels"], regions)
    return M.edit_flicker(
        scene["rgb"], edited, scene["canonical"], scene["times"], scene["cameras"], mask, voxel_size=voxel_size
    )


def _blue_hair():
    return DEFAULT_PROMPT_SET.find("photo of a person with blue hair")


# ------------------------------------------------------------------------------------------------------ colour


def test_lab_of_known_colours():
    lab = M.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]))
    expected = [[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86], [53.39, 0.0, 0.0]]
    np.testing.assert_allclose(lab, expected, atol=0.02)
    assert M.delta_e76(lab[0], lab[1]) == pytest.approx(100.0, abs=1e-3)
    assert M.hue_angle(lab[2]) == pytest.approx(40.0, abs=0.1)
    # Torch tensors are accepted as well.
    np.testing.assert_allclose(M.srgb_to_lab(torch.tensor([1.0, 0.0, 0.0])), expected[2], atol=0.02)


def test_named_colours_survive_shading(scene):
    # The synth shades albedo * light; the nearest shade of the right name wins on almost every hair pixel.
    hair = M.erode_mask(M.region_mask(scene["labels"], ["hair"]), 1)
    names = M.classify_colors(scene["rgb"][hair], HAIR_COLORS)
    assert np.mean(np.array(names) == "brown") > 0.95


# ---------------------------------------------------------------------------------------------------- metrics


def test_unedited_avatar_scores_perfectly(scene):
    rgb = scene["rgb"]
    identity = M.identity_scores(rgb, rgb.copy(), scene["labels"], ["hair"])
    assert identity.psnr == M.PSNR_CAP_DB and identity.ssim == 1.0 and identity.num_pixels > 0
    flicker = _flicker(scene, rgb.copy(), regions=("head",))
    assert flicker.time_flicker == 0.0 and flicker.view_flicker == 0.0
    assert flicker.time_voxels > 0 and flicker.view_voxels > 0
    hair = M.region_mask(scene["labels"], ["hair"])
    fidelity = M.fidelity_scores(rgb[hair], rgb[hair], HAIR_COLORS["blue"], HAIR_COLORS, "blue")
    assert fidelity.delta_e_improvement == 0.0 and fidelity.hit_fraction_after == 0.0


def test_constant_hair_edit(scene):
    edited = _hair_edit(scene, lambda i: BLUE_SHIFT)
    assert edited.max() <= 1.0 and edited.min() >= 0.0
    identity = M.identity_scores(scene["rgb"], edited, scene["labels"], ["hair"])
    assert identity.psnr == M.PSNR_CAP_DB and identity.ssim == pytest.approx(1.0, abs=1e-12)
    # Measured on the whole head, the same edit costs identity: the metric does see hair pixels.
    assert M.identity_scores(scene["rgb"], edited, scene["labels"], ["eyes"]).psnr < 30

    hair = M.region_mask(scene["labels"], ["hair"])
    fidelity = M.fidelity_scores(scene["rgb"][hair], edited[hair], HAIR_COLORS["blue"], HAIR_COLORS, "blue")
    assert fidelity.delta_e_after < fidelity.delta_e_before - 10
    assert fidelity.hit_fraction_before < 0.05 and fidelity.hit_fraction_after > 0.5
    assert fidelity.hue_error_after < fidelity.hue_error_before

    flicker = _flicker(scene, edited)
    assert flicker.time_flicker < 1e-9 and flicker.view_flicker < 1e-9


def test_flickering_edit_scores_worse(scene):
    rng = np.random.default_rng(0)
    per_time = rng.normal(0.0, 0.08, size=(3, 3))
    per_camera = rng.normal(0.0, 0.08, size=(4, 3))
    over_time = _hair_edit(scene, lambda i: BLUE_SHIFT + per_time[scene["times"][i]])
    over_views = _hair_edit(scene, lambda i: BLUE_SHIFT + per_camera[scene["cameras"][i]])
    consistent = _flicker(scene, _hair_edit(scene, lambda i: BLUE_SHIFT))
    time_flicker = _flicker(scene, over_time)
    view_flicker = _flicker(scene, over_views)
    assert time_flicker.time_flicker > 0.03 > 100 * consistent.time_flicker
    assert view_flicker.view_flicker > 0.03 > 100 * consistent.view_flicker
    # A change that is the same for every view of one time does not count as view flicker.
    assert time_flicker.view_flicker < 1e-9


def test_masks_and_regions():
    labels = np.zeros((1, 9, 9), dtype=np.uint8)
    labels[0, 2:7, 2:7] = L.SKIN
    labels[0, 4, 4] = L.IRIS
    assert M.region_ids(["eyes"]) == (L.SCLERA, L.IRIS, L.PUPIL)
    keep = M.preserved_mask(labels, ["iris"], dilation=1)
    assert keep.sum() == 25 - 5 and not keep[0, 0, 0]  # a disc of radius 1 px is a cross
    assert M.erode_mask(labels == L.SKIN, 1).sum() < (labels == L.SKIN).sum()
    with pytest.raises(ValueError, match="Unknown region 'tail'"):
        M.region_ids(["tail"])


# ------------------------------------------------------------------------------------------------- prompt sets


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_prompt_set_round_trip(tmp_path, suffix):
    path = save_prompt_set(DEFAULT_PROMPT_SET, tmp_path / f"prompts{suffix}")
    loaded = load_prompt_set(path)
    assert loaded == DEFAULT_PROMPT_SET and loaded.path == path
    regions = {p.regions for p in loaded.prompts}
    assert {("hair",), ("skin",), ("eyes",)} <= regions
    eyes = loaded.find("  Photo of a person with GREEN eyes ")
    assert eyes.measured_regions == ("iris",) and eyes.target_color() == (0.22, 0.58, 0.28)
    green_skin = loaded.find("photo of a person with green skin")
    assert green_skin.target_name == "requested" and "dark" in green_skin.palette()


def test_bad_prompt_sets_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    cases = [
        ({"prompts": [{"prompt": "photo of a person with blue tail", "regions": ["tail"]}]}, "unknown region"),
        ({"prompts": [{"prompt": "blue hair", "regions": ["hair"]}]}, "needs 'expected'"),
        ({"prompts": [{"prompt": "blue hair", "regions": ["hair"], "expected": {"hair_color": "teal"}}]}, "teal"),
        ({"prompts": [{"prompt": "x", "regions": ["hair"], "target_rgb": [0, 2, 0]}]}, "target_rgb"),
        ({"prompt": []}, "non-empty 'prompts' list"),
    ]
    for content, problem in cases:
        path.write_text(json.dumps(content))
        with pytest.raises(PromptSetError, match=problem) as err:
            load_prompt_set(path)
        assert str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(PromptSetError, match="not valid JSON"):
        load_prompt_set(path)
    with pytest.raises(PromptSetError, match="missing.yaml"):
        load_prompt_set(tmp_path / "missing.yaml")
    with pytest.raises(KeyError, match="purple hair"):
        DEFAULT_PROMPT_SET.find("photo of a person with purple hair")


# ------------------------------------------------------------------------------------------- rendering path


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A tiny capture written by ``avatarstudio synth`` (held-out camera 3)."""
    from avatarstudio_ns.scripts import main as cli

    out = tmp_path_factory.mktemp("eval") / "head"
    argv = ["avatarstudio", "synth", "--output", str(out), "--num-cameras", "4", "--num-frames", "3"]
    argv += ["--resolution", "32", "--no-progress"]
    old = sys.argv
    sys.argv = argv
    try:
        cli.entrypoint()
    finally:
        sys.argv = old
    return out


@pytest.fixture(scope="module")
def outputs(capture):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig

    parser = AvatarStudioDataParserConfig(data=capture).setup()
    return parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")


class CaptureReplay(torch.nn.Module):
    """Stand-in for a trained avatar: "renders" a camera by returning the capture's own image of it, optionally
    with the hair shifted by ``shift(timestep)``."""

    def __init__(self, outputs, shift=None):
        super().__init__()
        self.images = []
        for split in outputs:
            for i, name in enumerate(split.image_filenames):
                rgb = iio.imread(name)[..., :3].astype(np.float32) / 255.0
                if shift is not None:
                    hair = np.isin(iio.imread(split.metadata["semantic_filenames"][i]), L.REGIONS["hair"])
                    rgb[hair] = np.clip(rgb[hair] + shift(int(split.metadata["timestep_indices"][i])), 0, 1)
                self.images.append((split.cameras[i], torch.from_numpy(rgb)))

    @property
    def device(self):
        return torch.device("cpu")

    def get_outputs_for_camera(self, camera):
        for known, rgb in self.images:
            same = torch.allclose(known.camera_to_worlds, camera.camera_to_worlds[0])
            if same and torch.allclose(known.times, camera.times[0]):
                return {"rgb": rgb}
        raise KeyError("camera not in the capture")


def test_views_come_from_the_capture(outputs):
    train, val = outputs
    views = collect_views(train, val, EvalSettings(num_train_cameras=2, timestep_stride=2))
    assert set(views.splits) == {"train", "val"}
    assert sorted(set(views.timestep_indices.tolist())) == [0, 2]
    assert len(set(views.camera_indices[np.array(views.splits) == "train"].tolist())) == 2
    assert views.labels.shape == (len(views), 32, 32) and views.canonical.shape == (len(views), 32, 32, 3)
    # Labels and canonical points agree on what is background.
    assert np.array_equal(views.labels == 0, np.isnan(views.canonical).all(-1))
    small = collect_views(train, val, EvalSettings(resolution=16))
    assert int(small.cameras[0].width) == 16 and small.resized(16, 16).labels.shape[1:] == (16, 16)


def test_evaluate_renders_and_measures(outputs, tmp_path):
    settings = EvalSettings(voxel_size=0.02, clip_model=None)
    views = collect_views(*outputs, settings)
    original = CaptureReplay(outputs)
    consistent = CaptureReplay(outputs, shift=lambda t: BLUE_SHIFT)
    flickering = CaptureReplay(outputs, shift=lambda t: BLUE_SHIFT + np.array([0.15, -0.1, -0.2]) * (t % 2))
    prompt = _blue_hair()
    edits = [
        (prompt, original, "unedited"),
        (prompt, consistent, "consistent"),
        (prompt, lambda: flickering, "flicker"),
    ]
    report = evaluate(original, edits, views, DEFAULT_PROMPT_SET, settings)
    unedited, good, bad = report["edits"]

    assert unedited["identity"]["psnr"] == M.PSNR_CAP_DB and unedited["identity"]["ssim"] == 1.0
    assert unedited["temporal"]["target"]["time_flicker"] == 0.0
    assert unedited["temporal"]["foreground"]["view_flicker"] == 0.0
    assert good["identity"]["psnr"] == M.PSNR_CAP_DB
    assert good["fidelity"]["delta_e_improvement"] > 5
    assert good["fidelity"]["hit_fraction_after"] > good["fidelity"]["hit_fraction_before"]
    assert bad["temporal"]["target"]["time_flicker"] > 10 * max(good["temporal"]["target"]["time_flicker"], 1e-3)
    assert unedited["clip_direction"] is None

    json_path, md_path = write_report(report, tmp_path / "scores.json")
    loaded = json.loads(json_path.read_text())
    assert loaded["views"]["val_cameras"] == [3] and loaded["views"]["timesteps"] == [0, 1, 2]
    assert "blue hair" in md_path.read_text() and "| 100.00 |" in md_path.read_text()
    # measure_edit alone works on arrays, without any model.
    direct = measure_edit(np.zeros((len(views), 32, 32, 3)), np.zeros((len(views), 32, 32, 3)), views, prompt)
    assert direct["identity"]["psnr"] == M.PSNR_CAP_DB


def test_eval_command_with_stand_in_pipelines(outputs, tmp_path, monkeypatch):
    import tyro

    from avatarstudio_ns.scripts import eval_edits
    from avatarstudio_ns.scripts.eval_edits import EvalCommand

    class Pipeline:
        def __init__(self, model):
            self.model = model
            parser = type("Parser", (), {"get_dataparser_outputs": lambda _, split: outputs[1]})()
            self.datamanager = type("DM", (), {"train_dataparser_outputs": outputs[0], "dataparser": parser})()

    pipelines = {"recon.yml": Pipeline(CaptureReplay(outputs)), "edit.yml": Pipeline(CaptureReplay(outputs))}
    monkeypatch.setattr(eval_edits, "load_pipeline", lambda config: pipelines[str(config)])
    prompt_set = save_prompt_set(
        PromptSet((EditPrompt("blue hair", ("hair",), {"hair_color": "blue"}),)), tmp_path / "p.yml"
    )
    args = ["--original", "recon.yml", "--edited", "edit.yml", "--prompt-set", str(prompt_set)]
    args += ["--prompt", "blue hair", "--output", str(tmp_path / "out.json"), "--voxel-size", "0.02"]
    args += ["--num-train-cameras", "1", "--clip-model", "None"]
    command = tyro.cli(EvalCommand, args=args)
    assert command.settings.voxel_size == 0.02 and command.settings.clip_model is None
    command.main()
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["edits"][0]["identity"]["psnr"] == M.PSNR_CAP_DB
    assert report["edits"][0]["prompt"] == "blue hair" and math.isclose(report["settings"]["voxel_size"], 0.02)
    bad = tyro.cli(EvalCommand, args=[*args[:6], "--prompt", "red hair"])
    with pytest.raises(SystemExit, match="no entry for the prompt 'red hair'"):
        bad.main()


# --------------------------------------------------------------------------------------- colour under shading


@pytest.fixture(scope="module")
def pale_and_dark_capture(tmp_path_factory):
    """A capture of a head with white hair and dark skin, the colours a lit grey and a lit brown resemble in shadow."""
    from avatarstudio_ns.data.synth.capture import CaptureConfig, render_capture

    out = tmp_path_factory.mktemp("shading") / "head"
    config = CaptureConfig(output=out, num_cameras=4, num_frames=2, resolution=48, progress=False)
    return render_capture(dataclasses.replace(config, hair_color="white", skin_tone="dark", hair_style="long"))


def _captured(views):
    return np.stack([iio.imread(f)[..., :3] for f in views.image_filenames]).astype(np.float64) / 255.0


@pytest.mark.parametrize(
    "prompt",
    [
        EditPrompt("photo of a person with white hair", ("hair",), {"hair_color": "white"}),
        EditPrompt("photo of a person with dark skin", ("skin",), {"skin_tone": "dark"}),
    ],
)
def test_a_head_that_has_the_requested_colour_scores_a_full_hit(pale_and_dark_capture, prompt):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig

    parser = AvatarStudioDataParserConfig(data=pale_and_dark_capture).setup()
    outputs = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    views = collect_views(*outputs, EvalSettings(num_train_cameras=4))
    assert views.shading is not None and views.shading[views.labels > 0].min() > 0
    images = _captured(views)
    hit = measure_edit(images, images, views, prompt)["fidelity"]["hit_fraction_after"]
    # Colour named from the pixel alone (searching over light levels), a shadowed part reads as another name.
    alone = collect_views(*outputs, EvalSettings(num_train_cameras=4, synth_shading=False))
    assert alone.shading is None
    hit_alone = measure_edit(images, images, alone, prompt)["fidelity"]["hit_fraction_after"]
    assert hit >= 0.97 and hit > hit_alone


def test_a_synth_that_no_longer_renders_the_capture_gives_no_shading(pale_and_dark_capture, tmp_path, capsys):
    import shutil

    from avatarstudio_ns.eval.synth_shading import capture_shading

    copy = tmp_path / "head"
    shutil.copytree(pale_and_dark_capture, copy)
    record = json.loads((copy / "synth.json").read_text())
    labels = np.stack([iio.imread(copy / "semantics" / f"00000_{c:02d}.png") for c in range(4)])
    assert capture_shading(copy, range(4), [0] * 4, labels) is not None
    record["attributes"]["hair_style"] = "short"
    (copy / "synth.json").write_text(json.dumps(record))
    assert capture_shading(copy, range(4), [0] * 4, labels) is None
    assert "avatarstudio synth" in " ".join(capsys.readouterr().out.split())


def test_the_exact_recolour_floor_is_what_the_synth_s_own_recoloured_head_scores(pale_and_dark_capture, tmp_path):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
    from avatarstudio_ns.data.synth.capture import CaptureConfig, render_capture
    from avatarstudio_ns.eval.evaluate import exact_recolour_flicker

    # The same head, performance and rig with red hair: the exact edit "red hair" of the white-haired capture.
    record = json.loads((pale_and_dark_capture / "synth.json").read_text())
    red = CaptureConfig(output=tmp_path / "red", num_cameras=4, num_frames=2, resolution=48, progress=False)
    red = render_capture(dataclasses.replace(red, hair_color="red", skin_tone="dark", hair_style="long"))
    assert json.loads((red / "synth.json").read_text())["seed"] == record["seed"]
    parser = AvatarStudioDataParserConfig(data=pale_and_dark_capture).setup()
    views = collect_views(parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val"))
    prompt = EditPrompt("photo of a person with red hair", ("hair",), {"hair_color": "red"})
    original = _captured(views)
    edited = np.stack([iio.imread(red / "images" / f.name)[..., :3] for f in views.image_filenames]) / 255.0
    flicker = measure_edit(original, edited, views, prompt)["temporal"]
    floor = exact_recolour_flicker(views, prompt, M.DEFAULT_VOXEL_SIZE)
    assert flicker["exact_recolour"] == dataclasses.asdict(floor)
    # A consistent edit that recolours textured hair is not scored zero, and the floor says how far from it.
    assert floor.time_flicker > 0.003 and floor.view_flicker > 0.003
    assert floor.time_flicker == pytest.approx(flicker["target"]["time_flicker"], rel=0.05)
    assert floor.view_flicker == pytest.approx(flicker["target"]["view_flicker"], rel=0.05)
    # Without the synth's light there is no floor.
    splits = (parser.get_dataparser_outputs(s) for s in ("train", "val"))
    alone = collect_views(*splits, EvalSettings(synth_shading=False))
    assert exact_recolour_flicker(alone, prompt, M.DEFAULT_VOXEL_SIZE) is None


def test_the_exact_recolour_floor_is_rendered_once_per_prompt_at_the_same_views(pale_and_dark_capture, monkeypatch):
    from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
    from avatarstudio_ns.eval import evaluate as E

    calls = []
    real = E.recoloured_capture
    monkeypatch.setattr(E, "recoloured_capture", lambda *a, **k: calls.append(a[3:]) or real(*a, **k))
    parser = AvatarStudioDataParserConfig(data=pale_and_dark_capture).setup()
    views = collect_views(parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val"))
    red = EditPrompt("photo of a person with red hair", ("hair",), {"hair_color": "red"})
    blue = EditPrompt("photo of a person with blue hair", ("hair",), {"hair_color": "blue"})
    original = _captured(views)
    # Two checkpoints of one edit and a second prompt: the synth renders the views again once per prompt.
    first = measure_edit(original, original * 0.9, views, red)["temporal"]["exact_recolour"]
    second = measure_edit(original, original * 0.8, views, red)["temporal"]["exact_recolour"]
    assert first == second
    measure_edit(original, original * 0.9, views, blue)
    assert len(calls) == 2
    # Other views (here: resized) have their own floor.
    E.exact_recolour_flicker(views.resized(24, 24), red, M.DEFAULT_VOXEL_SIZE)
    assert len(calls) == 3
