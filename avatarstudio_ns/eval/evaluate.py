"""Scores of text edits of an avatar: identity preservation, prompt fidelity and temporal consistency.

Three separable steps, so the measuring can run without trained models (tests use stand-ins):

1. :func:`collect_views` picks the capture's images to evaluate (the held-out camera and a few training cameras, at
   every timestep or a stride of them) from the dataparser outputs, with their semantic labels and canonical points.
2. :func:`render_images` renders them with anything that has nerfstudio's ``get_outputs_for_camera``.
3. :func:`measure_edit` scores one edited avatar against the original (``avatarstudio_ns.eval.metrics``);
   :func:`evaluate` runs 2 and 3 for an original and several edits and returns the report.

:func:`load_pipeline` loads a trained avatar from its config.yml, and :func:`write_report` writes the report as JSON
and a markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import yaml
from jaxtyping import Float, Int, UInt8
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from rich.console import Console
from rich.table import Table
from transformers import CLIPModel, CLIPProcessor

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.synth.canonical import load_canonical_points
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.prompt_set import EditPrompt, PromptSet
from avatarstudio_ns.eval.synth_shading import capture_shading, recoloured_capture

CONSOLE = Console()


@dataclass
class EvalSettings:
    """Which images are rendered and how edits are measured."""

    num_train_cameras: int = 4
    """Training cameras rendered besides the held-out (val) cameras, spread evenly over the rig starting from the
    frontal camera."""
    timestep_stride: int = 1
    """Render every k-th timestep of the performance."""
    resolution: int | None = None
    """Longer image side to render at (only ever downscales); the capture's size when None."""
    dilation: int = 2
    """Pixels the target region is grown by before identity is measured on the rest (edge pixels mix both)."""
    fidelity_erosion: int = 1
    """Pixels the measured region is shrunk by before its colour is measured (unless that leaves nothing)."""
    synth_shading: bool = True
    """On a synth capture, compare colours as the synth shows them at each pixel (its light and highlight there,
    eval/synth_shading.py); False searches over light levels instead, the measure before 2026-12-04, under which
    a synth head's own white hair scored a fidelity hit of 0.71 and its dark skin 0.83 (1.00 and 1.00 with it)."""
    voxel_size: float = M.DEFAULT_VOXEL_SIZE
    """Edge of the canonical voxels that identify one surface point for the flicker scores, metres."""
    clip_model: str | None = "openai/clip-vit-base-patch32"
    """CLIP weights for the text-image direction score: a local folder or a Hugging Face id already in the local
    cache (nothing is downloaded); None skips it."""
    clip_max_images: int = 16
    """Images (evenly spaced over the evaluated ones) that CLIP scores."""


# ------------------------------------------------------------------------------------------------------ views


@dataclass
class EvalViews:
    """The images an evaluation renders, with what the capture knows about each pixel."""

    cameras: list[Cameras]
    """One single-camera Cameras (with its time) per image, in the dataparser's world."""
    labels: UInt8[np.ndarray, "num_images H W"]
    """Semantic label ids (avatarstudio_ns.data.labels) of the captured image."""
    canonical: Float[np.ndarray, "num_images H W 3"] | None
    """Canonical surface points, metres, NaN on background; None when the capture has none."""
    camera_indices: Int[np.ndarray, " num_images"]
    """Rig camera of each image."""
    timestep_indices: Int[np.ndarray, " num_images"]
    """Performance frame of each image."""
    splits: list[str]
    """Split each image comes from ("train" or "val")."""
    image_filenames: list[Path] = field(default_factory=list)
    """The captured image of each view."""
    shading: Float[np.ndarray, "num_images H W"] | None = None
    """The synth's grey shading factor at each pixel centre (eval/synth_shading.py); None when unknown."""
    specular: Float[np.ndarray, "num_images H W"] | None = None
    """The synth's highlight at each pixel centre; None when unknown."""
    exact_recolour: dict[tuple, M.FlickerScores | None] = field(default_factory=dict, init=False, repr=False)
    """:func:`exact_recolour_flicker` at these views, by prompt and voxel size: it does not depend on the edit, so
    every edit of one prompt (and every checkpoint of one edit) reuses it."""

    def __len__(self) -> int:
        return len(self.cameras)

    def resized(self, height: int, width: int) -> EvalViews:
        """The views with labels and canonical points resampled (nearest pixel) to ``height`` x ``width``."""
        if self.labels.shape[1:] == (height, width):
            return self

        def resize(stack: np.ndarray) -> np.ndarray:
            return np.stack([cv2.resize(a, (width, height), interpolation=cv2.INTER_NEAREST) for a in stack])

        return dataclasses.replace(
            self,
            labels=resize(self.labels),
            canonical=None if self.canonical is None else resize(self.canonical),
            shading=None if self.shading is None else resize(self.shading),
            specular=None if self.specular is None else resize(self.specular),
        )


def _pick_cameras(cameras: list[int], count: int, frontal: int | None) -> list[int]:
    """``count`` of the sorted ``cameras`` spread evenly around the rig, starting from ``frontal`` when present."""
    if count >= len(cameras):
        return list(cameras)
    start = cameras.index(frontal) if frontal in cameras else 0
    return sorted({cameras[(start + round(i * len(cameras) / count)) % len(cameras)] for i in range(count)})


def collect_views(
    train: DataparserOutputs, val: DataparserOutputs | None, settings: EvalSettings | None = None
) -> EvalViews:
    """Picks the images to evaluate and reads their labels and canonical points (synth captures write both).

    Args:
        train: the avatarstudio dataparser's train outputs.
        val: its val outputs (the held-out camera); None to use training cameras only.
        settings: how many cameras and timesteps.

    Raises:
        ValueError: when the capture has no semantic labels.
    """
    settings = settings or EvalSettings()
    if val is not None and set(val.image_filenames) <= set(train.image_filenames):
        val = None  # no held-out camera (holdout_camera None): val repeats training images
    splits = [("train", train)] + ([("val", val)] if val is not None else [])
    for name, outputs in splits:
        if not outputs.metadata.get("semantic_filenames"):
            raise ValueError(
                f"The {name} split of the capture has no semantic labels (per-frame semantic_path, written by "
                "avatarstudio synth); edits are scored per region, so they are required."
            )
    steps = sorted({int(t) for _, o in splits for t in o.metadata["timestep_indices"].tolist()})
    keep_steps = set(steps[:: max(1, settings.timestep_stride)])
    train_cameras = sorted({int(c) for c in train.metadata["camera_indices"].tolist()})
    frontal = train.metadata.get("frontal_camera_index")
    keep_train = set(_pick_cameras(train_cameras, settings.num_train_cameras, frontal))

    cameras, labels, canonical, cam_ids, step_ids, split_names, files = [], [], [], [], [], [], []
    has_canonical = all(o.metadata.get("canonical_filenames") for _, o in splits)
    for name, outputs in splits:
        meta = outputs.metadata
        for i in range(len(outputs.image_filenames)):
            camera, step = int(meta["camera_indices"][i]), int(meta["timestep_indices"][i])
            if step not in keep_steps or (name == "train" and camera not in keep_train):
                continue
            cam = outputs.cameras[i : i + 1]
            if settings.resolution is not None:
                size = max(int(cam.width[0, 0]), int(cam.height[0, 0]))
                if settings.resolution < size:
                    cam.rescale_output_resolution(settings.resolution / size)
            cameras.append(cam)
            label = cv2.imread(str(meta["semantic_filenames"][i]), cv2.IMREAD_UNCHANGED)
            if label is None or label.ndim != 2:
                raise ValueError(f"{meta['semantic_filenames'][i]} is not an 8-bit single-channel label image.")
            labels.append(label)
            if has_canonical:
                canonical.append(load_canonical_points(meta["canonical_filenames"][i]))
            cam_ids.append(camera)
            step_ids.append(step)
            split_names.append(name)
            files.append(Path(outputs.image_filenames[i]))
    if not cameras:
        raise ValueError("No capture image matches the requested cameras and timesteps.")
    label_stack = np.stack(labels)
    shaded = None
    if settings.synth_shading:
        # The capture folder is the one above images/ (docs/data_format.md).
        shaded = capture_shading(files[0].parent.parent, cam_ids, step_ids, label_stack)
    return EvalViews(
        cameras=cameras,
        labels=label_stack,
        canonical=np.stack(canonical) if has_canonical else None,
        camera_indices=np.array(cam_ids),
        timestep_indices=np.array(step_ids),
        splits=split_names,
        image_filenames=files,
        shading=None if shaded is None else shaded[0],
        specular=None if shaded is None else shaded[1],
    )


# ---------------------------------------------------------------------------------------------------- render


class Renderable(Protocol):
    """What rendering needs of a model: nerfstudio's ``Model.get_outputs_for_camera``."""

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, torch.Tensor]: ...


@torch.no_grad()
def render_images(model: Renderable, cameras: Sequence[Cameras]) -> Float[np.ndarray, "num_images H W 3"]:
    """Float RGB renders in [0, 1] of each single-camera ``Cameras`` (kept in float: flicker is measured on
    differences far below one 8-bit level)."""
    if hasattr(model, "eval"):
        model.eval()  # type: ignore[attr-defined]
    device = getattr(model, "device", "cpu")
    frames = []
    for camera in cameras:
        rgb = model.get_outputs_for_camera(camera.to(device))["rgb"]
        frames.append(rgb.clamp(0, 1).float().cpu().numpy())
    return np.stack(frames)


@torch.no_grad()
def render_edit_region(model: Renderable, cameras: Sequence[Cameras]) -> Float[np.ndarray, "num_images H W"] | None:
    """The edit region as each camera sees it (the model's ``edit_region`` output), or None for a model without
    one (an unlocalised edit)."""
    device = getattr(model, "device", "cpu")
    frames = []
    for camera in cameras:
        outputs = model.get_outputs_for_camera(camera.to(device))
        if "edit_region" not in outputs:
            return None
        frames.append(outputs["edit_region"][..., 0].float().cpu().numpy())
    return np.stack(frames)


# --------------------------------------------------------------------------------------------------- measure


def _fidelity_mask(views: EvalViews, prompt: EditPrompt, erosion: int) -> np.ndarray:
    mask = M.region_mask(views.labels, prompt.measured_regions)
    eroded = M.erode_mask(mask, erosion)
    # Small regions (an iris at low resolution) vanish under erosion; edge pixels are better than none.
    return eroded if eroded.any() else mask


def exact_recolour_flicker(views: EvalViews, prompt: EditPrompt, voxel_size: float) -> M.FlickerScores | None:
    """Flicker of the synth's own exact recolouring at the views: the measure's floor for this prompt there.

    The capture's views rendered again with the prompt's measured parts in the requested albedo
    (:func:`~avatarstudio_ns.eval.synth_shading.recoloured_capture`), scored against the capture like an edit. That
    edit is consistent by construction, yet scores above zero: a canonical voxel is seen through different pixel
    centres, which sample the texture detail the new colour is shaded with, and edge pixels mix parts. An edit to
    that colour can hardly flicker less.

    Args:
        views: the views, at the size of the renders (see :meth:`EvalViews.resized`).
        prompt: the edit prompt and its target.
        voxel_size: edge of the canonical voxels that identify one surface point, metres.

    Returns:
        The scores on the prompt's target region; None without the synth's shading (a capture the synth did not
        make, or cannot render again) or canonical points.
    """
    key = (prompt.prompt, prompt.regions, prompt.measured_regions, tuple(prompt.target_color()), voxel_size)
    if key not in views.exact_recolour:
        views.exact_recolour[key] = _exact_recolour_flicker(views, prompt, voxel_size)
    return views.exact_recolour[key]


def _exact_recolour_flicker(views: EvalViews, prompt: EditPrompt, voxel_size: float) -> M.FlickerScores | None:
    if views.shading is None or views.canonical is None or not views.image_filenames:
        return None
    recoloured = recoloured_capture(
        views.image_filenames[0].parent.parent,  # the capture folder, above images/ (docs/data_format.md)
        views.camera_indices.tolist(),
        views.timestep_indices.tolist(),
        M.region_ids(prompt.measured_regions),
        prompt.target_color(),
    )
    if recoloured is None:
        return None
    height, width = views.labels.shape[1:]
    captured = np.stack([_read_rgb(f, width, height) for f in views.image_filenames])
    recoloured = np.stack([_resized(image, width, height) for image in recoloured])
    return M.edit_flicker(
        captured,
        recoloured,
        views.canonical,
        views.timestep_indices,
        views.camera_indices,
        M.region_mask(views.labels, prompt.regions),
        voxel_size,
    )


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at ``width`` x ``height`` (area-averaged when smaller)."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _read_rgb(path: Path, width: int, height: int) -> Float[np.ndarray, "H W 3"]:
    """A captured image as RGB in [0, 1] at ``width`` x ``height``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} is not a readable image.")
    return _resized(image[..., ::-1].astype(np.float32) / 255.0, width, height)


def measure_edit(
    original: Float[np.ndarray, "num_images H W 3"],
    edited: Float[np.ndarray, "num_images H W 3"],
    views: EvalViews,
    prompt: EditPrompt,
    settings: EvalSettings | None = None,
    region: Float[np.ndarray, "num_images H W"] | None = None,
) -> dict[str, Any]:
    """Identity, fidelity and flicker scores of one edit (plain dict, see metrics.py for each number).

    Args:
        original: renders of the original avatar, one per view.
        edited: renders of the edited avatar, same views.
        views: the views, their labels and canonical points (resized to the renders when needed).
        prompt: the edit prompt and its target.
        settings: measuring settings.
        region: the edit's region as rendered in each view, when it has one (scored against the target's labels).
    """
    settings = settings or EvalSettings()
    if original.shape != edited.shape:
        raise ValueError(f"Original and edited renders differ in shape: {original.shape} vs {edited.shape}.")
    views = views.resized(*original.shape[1:3])
    identity = M.identity_scores(original, edited, views.labels, prompt.regions, settings.dilation)
    measured = _fidelity_mask(views, prompt, settings.fidelity_erosion)
    fidelity = M.fidelity_scores(
        original[measured],
        edited[measured],
        prompt.target_color(),
        prompt.palette(),
        prompt.target_name,
        shading=None if views.shading is None else views.shading[measured],
        specular=None if views.specular is None else views.specular[measured],
    )
    temporal: dict[str, Any] | None = None
    if views.canonical is not None:
        target = M.region_mask(views.labels, prompt.regions)
        foreground = views.labels != 0

        def flicker(mask: np.ndarray) -> dict[str, Any]:
            scores = M.edit_flicker(
                original,
                edited,
                views.canonical,
                views.timestep_indices,
                views.camera_indices,
                mask,
                settings.voxel_size,
            )
            return dataclasses.asdict(scores)

        temporal = {"target": flicker(target), "foreground": flicker(foreground)}
        exact = exact_recolour_flicker(views, prompt, settings.voxel_size)
        if exact is not None:
            temporal["exact_recolour"] = dataclasses.asdict(exact)
    return {
        "prompt": prompt.prompt,
        "regions": list(prompt.regions),
        "fidelity_regions": list(prompt.measured_regions),
        "target": {"name": prompt.target_name, "rgb": list(prompt.target_color())},
        "identity": dataclasses.asdict(identity),
        "fidelity": dataclasses.asdict(fidelity),
        "temporal": temporal,
        "region_iou": None
        if region is None
        else M.region_iou(region, M.region_mask(views.labels, prompt.regions), views.labels != 0),
    }


def clip_direction_similarity(
    original: Float[np.ndarray, "num_images H W 3"],
    edited: Float[np.ndarray, "num_images H W 3"],
    source_text: str,
    prompt_text: str,
    model_name: str | None,
    max_images: int = 16,
) -> float | None:
    """Mean cosine between each image's CLIP edit direction and the text direction source -> prompt.

    Only local weights are used (``local_files_only``); returns None, with a printed reason, when there are none.
    """
    if model_name is None:
        return None
    try:
        model = CLIPModel.from_pretrained(model_name, local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(model_name, local_files_only=True)
    except Exception as err:  # missing weights are the normal case: the score is an optional extra
        CONSOLE.print(f"[yellow]CLIP direction similarity skipped: no local CLIP weights {model_name!r} ({err}).")
        return None
    pick = np.unique(np.linspace(0, len(original) - 1, min(max_images, len(original))).round().astype(int))

    def features(out: Any) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
        return torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)

    def embed_images(images: np.ndarray) -> torch.Tensor:
        inputs = processor(images=[(im * 255 + 0.5).astype(np.uint8) for im in images], return_tensors="pt")
        return features(model.get_image_features(**inputs))

    with torch.no_grad():
        image_dir = embed_images(edited[pick]) - embed_images(original[pick])
        text = processor(text=[source_text, prompt_text], return_tensors="pt", padding=True)
        text_emb = features(model.get_text_features(**text))
        text_dir = text_emb[1] - text_emb[0]
        return float(torch.nn.functional.cosine_similarity(image_dir, text_dir[None], dim=-1).mean())


def evaluate(
    original_model: Renderable,
    edits: Sequence[tuple[EditPrompt, Renderable | Callable[[], Renderable], str]],
    views: EvalViews,
    prompt_set: PromptSet,
    settings: EvalSettings | None = None,
    original_name: str = "original",
) -> dict[str, Any]:
    """Renders the original once and each edit, and scores every edit against its prompt.

    Args:
        original_model: the unedited avatar.
        edits: (prompt entry, edited avatar or a function loading it, name for the report) per edit.
        views: the views to render (see collect_views).
        prompt_set: the set the prompts come from (for the CLIP source caption and the report).
        settings: rendering and measuring settings.
        original_name: how the report names the original (its config path).

    Returns:
        The report: views, settings and one entry per edit (see measure_edit), JSON-ready.
    """
    settings = settings or EvalSettings()
    with CONSOLE.status(f"Rendering the original avatar ({len(views)} views)..."):
        original = render_images(original_model, views.cameras)
    results = []
    for prompt, model, name in edits:
        if not hasattr(model, "get_outputs_for_camera"):
            model = model()  # a loader: the edited avatar is loaded only now, one at a time
        with CONSOLE.status(f"Rendering the edit {name} ({len(views)} views)..."):
            edited = render_images(model, views.cameras)
            region = render_edit_region(model, views.cameras)
        result = {"edited": name, **measure_edit(original, edited, views, prompt, settings, region)}
        result["clip_direction"] = clip_direction_similarity(
            original, edited, prompt_set.source, prompt.prompt, settings.clip_model, settings.clip_max_images
        )
        results.append(result)
    return {
        "original": original_name,
        "prompt_set": str(prompt_set.path) if prompt_set.path is not None else "built-in",
        "views": {
            "num_images": len(views),
            "cameras": sorted({int(c) for c in views.camera_indices}),
            "val_cameras": sorted(
                {int(c) for c, split in zip(views.camera_indices, views.splits, strict=True) if split == "val"}
            ),
            "timesteps": sorted({int(t) for t in views.timestep_indices}),
            "image_size": list(original.shape[1:3]),
            "has_canonical": views.canonical is not None,
        },
        "settings": {**dataclasses.asdict(settings), "psnr_cap_db": M.PSNR_CAP_DB},
        "edits": results,
    }


# ------------------------------------------------------------------------------------------------ pipelines


def load_pipeline(config: Path) -> Any:
    """The trained pipeline of a nerfstudio config.yml, for rendering only (no optimiser, no guidance model)."""
    # heavy (eval_utils imports every method config of nerfstudio's registry, ~3 s): imported when a pipeline is
    # loaded, so the commands' --help stays fast
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config, test_mode="inference")
    return pipeline


def pipeline_outputs(pipeline: Any) -> tuple[DataparserOutputs, DataparserOutputs | None]:
    """Train and val dataparser outputs of a loaded pipeline's capture (val None when it has no val split)."""
    datamanager = pipeline.datamanager
    train = datamanager.train_dataparser_outputs
    try:
        val = datamanager.dataparser.get_dataparser_outputs(split="val")
    except Exception:  # a capture without a held-out camera: evaluate on training cameras only
        val = None
    return train, val


def recorded_prompt(config: Path) -> str | None:
    """The prompt an ``avatarstudio-edit`` run was trained with, read from its config.yml (None if it has none)."""
    # nerfstudio saves its TrainerConfig as a python-tagged yaml and reads it back the same way (eval_setup).
    trainer_config = yaml.load(Path(config).read_text(), Loader=yaml.Loader)
    model = getattr(getattr(trainer_config, "pipeline", None), "model", None)
    prompt = getattr(model, "prompt", None)
    return prompt if isinstance(prompt, str) else None


# --------------------------------------------------------------------------------------------------- report


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null (JSON has no such numbers); numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


REPORT_COLUMNS = (
    "edit",
    "prompt",
    "PSNR (dB) ↑",
    "SSIM ↑",
    "ΔE before → after ↓",
    "hit before → after ↑",
    "time flicker (exact recolour) ↓",
    "view flicker (exact recolour) ↓",
    "region IoU ↑",
    "CLIP dir ↑",
)
"""Columns of the summary table; identity is on non-target pixels, flicker on the target region (RGB units), beside
that of the synth's own exact recolouring of the target (the floor an edit can reach; synth captures only)."""


def _flicker_cell(target: dict[str, Any], exact: dict[str, Any] | None, key: str) -> str:
    """An edit's flicker, with the exact recolour's in brackets when known."""
    value = _fmt(target.get(key), 4)
    return value if exact is None else f"{value} ({_fmt(exact[key], 4)})"


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """One summary row per edit, in REPORT_COLUMNS order."""
    rows = []
    for edit in report["edits"]:
        ident, fid, temporal = edit["identity"], edit["fidelity"], edit["temporal"] or {}
        target, exact = temporal.get("target", {}), temporal.get("exact_recolour")
        rows.append(
            [
                edit["edited"],
                edit["prompt"],
                _fmt(ident["psnr"]),
                _fmt(ident["ssim"], 4),
                f"{_fmt(fid['delta_e_before'], 1)} → {_fmt(fid['delta_e_after'], 1)}",
                f"{_fmt(fid['hit_fraction_before'])} → {_fmt(fid['hit_fraction_after'])}",
                _flicker_cell(target, exact, "time_flicker"),
                _flicker_cell(target, exact, "view_flicker"),
                _fmt(edit.get("region_iou")),
                _fmt(edit.get("clip_direction"), 3),
            ]
        )
    return rows


def report_markdown(report: dict[str, Any]) -> str:
    """The summary table as markdown, with a line on what was rendered."""
    views = report["views"]
    lines = [
        f"Original: `{report['original']}`; prompt set: `{report['prompt_set']}`; {views['num_images']} views "
        f"(cameras {views['cameras']}, {len(views['timesteps'])} timesteps, {views['image_size'][1]}x"
        f"{views['image_size'][0]} px).",
        "",
        "| " + " | ".join(REPORT_COLUMNS) + " |",
        "|" + "---|" * len(REPORT_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in report_rows(report)]
    lines += [
        "",
        f"PSNR / SSIM: edited vs original render outside the target region (grown by "
        f"{report['settings']['dilation']} px); {M.PSNR_CAP_DB:.0f} dB means identical. ΔE: shading-compensated "
        "CIELAB ΔE76 of the target region to the requested colour; hit: fraction of target pixels whose nearest named "
        f"colour is the requested one. Flicker: variation of the edit (edited - original, RGB in [0, 1]) on one "
        f"canonical voxel ({report['settings']['voxel_size'] * 1000:g} mm) across timesteps / across views. Region "
        "IoU: the edit region (where the edit may change the avatar) against the target's labels.",
    ]
    return "\n".join(lines) + "\n"


def print_report(report: dict[str, Any], console: Console = CONSOLE) -> None:
    """The summary table on the terminal."""
    table = Table(title="Edit scores")
    for column in REPORT_COLUMNS:
        table.add_column(column, justify="left" if column in ("edit", "prompt") else "right")
    for row in report_rows(report):
        table.add_row(*row)
    console.print(table)


def write_report(report: dict[str, Any], path: Path) -> tuple[Path, Path]:
    """Writes the report as JSON at ``path`` and its summary table as markdown beside it (same stem, .md), each under
    a temporary name and then renamed, so a killed run leaves the earlier scores or the new ones, never cut ones."""
    path = Path(path)
    atomic_write_text(path, json.dumps(_jsonable(report), indent=2, ensure_ascii=False) + "\n")
    markdown = path.with_suffix(".md")
    atomic_write_text(markdown, report_markdown(report))
    return path, markdown
