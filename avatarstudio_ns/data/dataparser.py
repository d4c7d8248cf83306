"""Dataparser for multi-view head video captures (VHAP / GaussianAvatars export, and D-NeRF style JSON).

The capture format is specified in ``docs/data_format.md``. Every split is read once, validated, and all
splits share one world transform (centring, orientation, scale) computed from all of their cameras, so a
held-out view lives in the same world as the training views.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from avatarstudio_ns.atomic import atomic_save

SPLITS = ("train", "val", "test")
"""The splits nerfstudio asks a dataparser for."""

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
"""Pinhole intrinsics that the top level of a transforms JSON sets and any frame may override."""

MIN_FRONT_SIDEDNESS = 0.5
"""How one-sided the rig must be (length of the mean horizontal camera direction) to name a frontal camera."""


@dataclass
class AvatarDataparserOutputs(DataparserOutputs):
    """nerfstudio's dataparser outputs, whose ``dataparser_transforms.json`` is written atomically."""

    def save_dataparser_transform(self, path: Path) -> None:
        """Writes the transform as nerfstudio does, under a temporary name, then renamed: the trainer rewrites it in
        the run folder at every start, and a run killed then left it cut in half."""
        atomic_save(Path(path), super().save_dataparser_transform)


class CaptureFormatError(ValueError):
    """A capture that does not follow docs/data_format.md; the message names the file and the problem."""


@dataclass
class AvatarStudioDataParserConfig(DataParserConfig):
    """Multi-view head video capture (VHAP / GaussianAvatars export, or D-NeRF style JSON with float times)."""

    _target: type = field(default_factory=lambda: AvatarStudioDataParser)
    """Target class to instantiate."""
    data: Path = Path()
    """Capture folder (holding transforms_train.json, or a single transforms.json), or one transforms JSON file."""
    holdout_camera: int | None = 8
    """Camera index held out for val/test when the capture has no transforms_val.json or transforms_test.json;
    None evaluates on the training frames."""
    scale_factor: float = 1.0
    """Extra factor applied to the camera positions after the automatic scaling."""
    scene_scale: float = 1.0
    """Half side of the scene box [-scene_scale, scene_scale]^3 handed to the model."""
    orientation_method: Literal["up", "none", "pca", "vertical"] = "up"
    """How to rotate the world: 'up' turns the mean camera up vector into +z (nerfstudio's viewer convention) and
    otherwise keeps the capture's up direction; 'none' keeps the capture's axes unchanged."""
    center_method: Literal["focus", "poses", "none"] = "focus"
    """Which point becomes the origin: 'focus' is the point the cameras look at (least-squares closest point to
    the optical axes), right for head rigs whose cameras sit on a front arc; 'poses' is the mean camera centre."""
    auto_scale_poses: bool = True
    """Scale the world so the region the cameras frame around the focus point has radius 1, i.e. the head fits
    the scene box; when False only scale_factor is applied."""
    background_color: tuple[float, float, float] | None = None
    """Backdrop colour (RGB in [0, 1]) overriding the JSON's background_color (D-NeRF style captures without one
    default to white); RGBA images are composited on it."""
    check_image_sizes: bool = True
    """Read every image and mask header (no decoding) to check it against the stated w/h; turn off to load very
    large captures faster (files are still checked for existence)."""


@dataclass
class _Frame:
    """One image of the capture, as read from a transforms JSON (original world coordinates)."""

    source: str
    """'<json file>, frame <i> (<file_path>)', used to name the frame in error messages."""
    image: Path
    pose: np.ndarray
    """4x4 camera-to-world, OpenGL convention."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    camera_index: int | None
    timestep_index: int | None
    time: float | None
    fg_mask: Path | None
    semantic: Path | None
    canonical: Path | None
    flame_param: Path | None
    """VHAP's per-timestep FLAME parameters; recorded for other tools, never read."""


@dataclass
class _Capture:
    """Every frame of every split, with the world transform shared by all splits."""

    fmt: Literal["vhap", "dnerf"]
    splits: dict[str, list[_Frame]]
    camera_to_worlds: dict[str, Float[Tensor, "num_frames 3 4"]]
    times: dict[str, Float[Tensor, "num_frames 1"]]
    camera_indices: dict[str, list[int]]
    timestep_indices: dict[str, list[int]]
    num_timesteps: int
    transform: Float[Tensor, "3 4"]
    scale: float
    frontal_camera_index: int | None
    background_color: Float[Tensor, "3"] | None


@dataclass
class AvatarStudioDataParser(DataParser):
    """Reads a multi-view head video capture; see docs/data_format.md for the format.

    Cameras carry ``times`` (N, 1) in [0, 1]. ``DataparserOutputs.metadata`` holds, per split:

    - ``camera_indices``: LongTensor [N], the rig camera of each image.
    - ``timestep_indices``: LongTensor [N], the performance frame of each image.
    - ``num_timesteps``: int, max timestep index + 1 over all splits (D-NeRF style: number of distinct times).
    - ``frontal_camera_index``: int or None, from the JSON, else the camera nearest the front of a one-sided
      (front arc) rig, else None (see ``_guess_frontal_camera``).
    - ``background_color``: FloatTensor [3] or None, the backdrop colour (also the ``alpha_color``).
    - ``fg_mask_filenames``, ``semantic_filenames``, ``canonical_filenames``: list of Paths or None.
    - ``flame_param_filenames``: list of Paths (VHAP's ``flame_param_path``, not checked or read) or None unless
      every frame of the split has one.
    - ``capture_format``: "vhap" or "dnerf".

    Foreground masks are deliberately not ``mask_filenames``; ``AvatarDataset`` adds them to batches as
    ``fg_mask``.
    """

    config: AvatarStudioDataParserConfig
    includes_time: bool = True

    def __init__(self, config: AvatarStudioDataParserConfig):
        super().__init__(config=config)
        self._capture: _Capture | None = None

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs: Any) -> DataparserOutputs:
        if split not in SPLITS:
            raise ValueError(f"Unknown dataparser split '{split}'; expected one of {SPLITS}.")
        # nerfstudio asks for train, then val or test: read and validate the capture only once.
        if self._capture is None:
            self._capture = self._load_capture()
        capture = self._capture
        frames = capture.splits[split]
        if split != "train":
            _note_unseen_timesteps(split, capture.timestep_indices[split], capture.timestep_indices["train"])

        cameras = Cameras(
            camera_to_worlds=capture.camera_to_worlds[split].clone(),
            fx=torch.tensor([[f.fx] for f in frames], dtype=torch.float32),
            fy=torch.tensor([[f.fy] for f in frames], dtype=torch.float32),
            cx=torch.tensor([[f.cx] for f in frames], dtype=torch.float32),
            cy=torch.tensor([[f.cy] for f in frames], dtype=torch.float32),
            width=torch.tensor([[f.width] for f in frames], dtype=torch.int32),
            height=torch.tensor([[f.height] for f in frames], dtype=torch.int32),
            camera_type=CameraType.PERSPECTIVE,
            times=capture.times[split].clone(),
        )
        s = self.config.scene_scale
        metadata = {
            "camera_indices": torch.tensor(capture.camera_indices[split], dtype=torch.long),
            "timestep_indices": torch.tensor(capture.timestep_indices[split], dtype=torch.long),
            "num_timesteps": capture.num_timesteps,
            "frontal_camera_index": capture.frontal_camera_index,
            "background_color": None if capture.background_color is None else capture.background_color.clone(),
            "fg_mask_filenames": _all_or_none([f.fg_mask for f in frames]),
            "semantic_filenames": _all_or_none([f.semantic for f in frames]),
            "canonical_filenames": _all_or_none([f.canonical for f in frames]),
            "flame_param_filenames": _all_or_none([f.flame_param for f in frames]),
            "capture_format": capture.fmt,
        }
        return AvatarDataparserOutputs(
            image_filenames=[f.image for f in frames],
            cameras=cameras,
            alpha_color=capture.background_color,
            scene_box=SceneBox(aabb=torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)),
            # Foreground masks go in metadata, not mask_filenames: nerfstudio's pixel sampler would otherwise
            # sample only inside the mask, and the reconstruction needs background rays too.
            mask_filenames=None,
            metadata=metadata,
            dataparser_transform=capture.transform.clone(),
            dataparser_scale=capture.scale,
        )

    # ----------------------------------------------------------------------------------------------- reading

    def _split_files(self) -> dict[str, Path | None]:
        """Finds the transforms JSON of each split; a split without its own file maps to None."""
        data = self.config.data
        if data.suffix == ".json":
            if not data.is_file():
                raise CaptureFormatError(f"The transforms file {data} does not exist.")
            if data.name != "transforms_train.json":
                # A single JSON holds the whole capture; the held-out camera makes the eval split.
                return {"train": data, "val": None, "test": None}
            data = data.parent
        if not data.is_dir():
            raise CaptureFormatError(f"The capture folder {data} does not exist.")
        if not (data / "transforms_train.json").is_file():
            if (data / "transforms.json").is_file():
                return {"train": data / "transforms.json", "val": None, "test": None}
            raise CaptureFormatError(
                f"The capture folder {data} has no transforms_train.json (or transforms.json); see docs/data_format.md."
            )
        files: dict[str, Path | None] = {"train": data / "transforms_train.json"}
        for split in ("val", "test"):
            path = data / f"transforms_{split}.json"
            files[split] = path if path.is_file() else None
        return files

    def _load_capture(self) -> _Capture:
        files = self._split_files()
        metas = {split: _read_json(path) for split, path in files.items() if path is not None}
        fmt = _detect_format(metas["train"], files["train"])  # type: ignore[arg-type]
        read = {split: self._read_frames(metas[split], files[split], fmt) for split in metas}  # type: ignore

        splits = _assign_splits(read, files, self.config.holdout_camera)
        # val and test may be the same frames (held-out camera): count every frame once.
        unique: dict[int, _Frame] = {}
        for split in SPLITS:
            unique.update((id(f), f) for f in splits[split])
        all_frames = list(unique.values())

        # Camera indices: from the JSON, else every frame is its own camera (numbered after the named ones).
        named = [f.camera_index for f in all_frames if f.camera_index is not None]
        next_free = max(named, default=-1) + 1
        for frame in all_frames:
            if frame.camera_index is None:
                frame.camera_index = next_free
                next_free += 1

        # Times and timestep indices, normalised over ALL splits so that val/test share the train timeline.
        if fmt == "vhap":
            max_step = max(f.timestep_index for f in all_frames)  # type: ignore[type-var]
            for frame in all_frames:
                frame.time = frame.timestep_index / max_step if max_step > 0 else 0.0  # type: ignore[operator]
            num_timesteps = int(max_step) + 1
        else:
            distinct = sorted({f.time for f in all_frames})  # type: ignore[type-var]
            rank = {t: i for i, t in enumerate(distinct)}
            for frame in all_frames:
                frame.timestep_index = rank[frame.time]
            num_timesteps = len(distinct)

        # One transform for every split, computed from all frames like nerfstudio's own parser does.
        transform, scale = self._world_transform(all_frames)
        c2w = {split: _apply_transform(splits[split], transform, scale) for split in SPLITS}

        train_meta = metas["train"]
        frontal = train_meta.get("frontal_camera_index")
        cameras = sorted({int(f.camera_index) for f in all_frames})  # type: ignore[arg-type]
        if frontal is not None and (not _is_index(frontal) or int(frontal) not in cameras):
            raise CaptureFormatError(
                f"{files['train']}: frontal_camera_index {frontal!r} is not one of the capture's cameras "
                f"({_ranges(cameras)})."
            )
        if frontal is None:
            frontal = _guess_frontal_camera(all_frames, _apply_transform(all_frames, transform, scale))
        _note_thin_capture(splits["train"], files["train"])  # type: ignore[arg-type]

        return _Capture(
            fmt=fmt,
            splits=splits,
            camera_to_worlds=c2w,
            times={s: torch.tensor([[f.time] for f in splits[s]], dtype=torch.float32) for s in SPLITS},
            camera_indices={s: [int(f.camera_index) for f in splits[s]] for s in SPLITS},  # type: ignore[arg-type]
            timestep_indices={s: [int(f.timestep_index) for f in splits[s]] for s in SPLITS},  # type: ignore
            num_timesteps=num_timesteps,
            transform=transform,
            scale=scale,
            frontal_camera_index=None if frontal is None else int(frontal),
            background_color=self._background_color(train_meta, files["train"], fmt),  # type: ignore[arg-type]
        )

    def _background_color(self, meta: dict, path: Path, fmt: str) -> Tensor | None:
        color = (
            self.config.background_color if self.config.background_color is not None else meta.get("background_color")
        )
        if color is None and fmt == "dnerf":
            # D-NeRF's RGBA images are meant to be composited on white (nerfstudio's dnerf parser does the same).
            color = (1.0, 1.0, 1.0)
        if color is None:
            return None
        if not (
            isinstance(color, (list, tuple))
            and len(color) == 3
            and all(_is_number(c) and 0.0 <= float(c) <= 1.0 for c in color)
        ):
            raise CaptureFormatError(f"{path}: background_color must be three numbers in [0, 1], got {color!r}.")
        return torch.tensor([float(c) for c in color], dtype=torch.float32)

    def _read_frames(self, meta: dict, path: Path, fmt: str) -> list[_Frame]:
        frames = meta.get("frames")
        if not isinstance(frames, list):
            raise CaptureFormatError(f"{path} has no 'frames' list.")
        if not frames:
            raise CaptureFormatError(f"{path} has an empty 'frames' list (empty split).")
        read = [self._read_frame(meta, frame, path, i, fmt) for i, frame in enumerate(frames)]
        # A per-ray quantity must exist for every frame of a split, or for none.
        for attr, key in (("fg_mask", "fg_mask_path"), ("semantic", "semantic_path"), ("canonical", "canonical_path")):
            present = [getattr(f, attr) is not None for f in read]
            if any(present) and not all(present):
                missing = read[present.index(False)]
                raise CaptureFormatError(f"{missing.source}: the frame has no {key} although other frames have one.")
        return read

    def _read_frame(self, meta: dict, frame: Any, path: Path, i: int, fmt: str) -> _Frame:
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise CaptureFormatError(f"{path}, frame {i}: the frame has no 'file_path' string.")
        where = f"{path}, frame {i} ({frame['file_path']})"

        def fail(problem: str) -> CaptureFormatError:
            return CaptureFormatError(f"{where}: {problem}.")

        root = path.parent
        image = _resolve(root, frame["file_path"], default_suffix=".png" if fmt == "dnerf" else None)
        if not image.is_file():
            missing = _missing_folder(image)
            if missing is not None:  # e.g. a combined export whose '../<sequence>/' folder was not copied along
                raise fail(f"the image file {image} does not exist because the folder {missing} does not exist")
            raise fail(f"the image file {image} does not exist")

        pose = np.asarray(frame.get("transform_matrix", []), dtype=object)
        if pose.shape != (4, 4) or not all(_is_real(v) for v in pose.flat):
            raise fail(f"transform_matrix must be a 4x4 matrix of numbers, got shape {pose.shape}")
        pose = pose.astype(np.float64)
        if not np.isfinite(pose).all():
            raise fail("transform_matrix has non-finite values")

        timestep_index = time = None
        if fmt == "vhap":
            timestep_index = frame.get("timestep_index")
            if timestep_index is None:
                raise fail("the frame has no timestep_index although the capture's first frame has one")
            if not _is_index(timestep_index):
                raise fail(f"timestep_index must be a non-negative integer, got {timestep_index!r}")
            timestep_index = int(timestep_index)
        else:
            time = frame.get("time")
            if time is None:
                raise fail("the frame has no time although the capture's first frame has one")
            if not _is_number(time) or not 0.0 <= float(time) <= 1.0:
                raise fail(f"time must be a number in [0, 1], got {time!r}")
            time = float(time)

        camera_index = frame.get("camera_index")
        if camera_index is not None and not _is_index(camera_index):
            raise fail(f"camera_index must be a non-negative integer, got {camera_index!r}")

        # Intrinsics: the frame overrides the top level; width/height fall back to the image header.
        value = {k: frame.get(k, meta.get(k)) for k in (*INTRINSIC_KEYS, "camera_angle_x", "camera_angle_y")}
        for key, v in value.items():
            if v is not None and (not _is_number(v) or not math.isfinite(float(v)) or float(v) <= 0):
                raise fail(f"{key} must be a positive number, got {v!r}")
            if v is not None and key.startswith("camera_angle") and float(v) >= math.pi:
                raise fail(f"{key} must be a field of view in radians, below pi, got {v!r}")
        size = None
        if value["w"] is None or value["h"] is None or self.config.check_image_sizes:
            size = _image_size(image, fail)
        width = int(value["w"]) if value["w"] is not None else size[0]  # type: ignore[index]
        height = int(value["h"]) if value["h"] is not None else size[1]  # type: ignore[index]
        if size is not None and size != (width, height):
            raise fail(f"the image {image} is {size[0]}x{size[1]} pixels but the JSON states w={width}, h={height}")
        # A frame's own focal length, as fl_x or as camera_angle_x, wins over the top level's: VHAP's top level
        # repeats one frame's intrinsics, so in a combined export it belongs to another camera and sequence.
        fx = _focal(frame, "fl_x", "camera_angle_x", width)
        fx = _focal(meta, "fl_x", "camera_angle_x", width) if fx is None else fx
        if fx is None:
            raise fail("no focal length is given (fl_x or camera_angle_x, in the frame or at the top level)")
        fy = _focal(frame, "fl_y", "camera_angle_y", height)
        fy = _focal(meta, "fl_y", "camera_angle_y", height) if fy is None else fy
        fy = fx if fy is None else fy
        cx = float(value["cx"]) if value["cx"] is not None else width / 2.0
        cy = float(value["cy"]) if value["cy"] is not None else height / 2.0

        extras: dict[str, Path | None] = {}
        for key in ("fg_mask_path", "semantic_path", "canonical_path"):
            extra = frame.get(key)
            if extra is None:
                extras[key] = None
                continue
            if not isinstance(extra, str):
                raise fail(f"{key} must be a path string, got {extra!r}")
            extras[key] = _resolve(root, extra, default_suffix=None)
            if not extras[key].is_file():  # type: ignore[union-attr]
                kind = {"fg_mask_path": "mask", "semantic_path": "semantic label", "canonical_path": "canonical"}[key]
                raise fail(f"the {kind} file {extras[key]} does not exist")
        # VHAP's FLAME parameters (combined exports point into the sequence folders): kept, but neither required
        # nor checked, as nothing here reads them.
        flame_param = frame.get("flame_param_path")
        if flame_param is not None and not isinstance(flame_param, str):
            raise fail(f"flame_param_path must be a path string, got {flame_param!r}")
        if extras["fg_mask_path"] is not None and self.config.check_image_sizes:
            mask_size = _image_size(extras["fg_mask_path"], fail)
            if mask_size != (width, height):
                raise fail(
                    f"the mask {extras['fg_mask_path']} is {mask_size[0]}x{mask_size[1]} pixels, not {width}x{height}"
                )

        return _Frame(
            source=where,
            image=image,
            pose=pose,
            fx=fx,
            fy=fy,
            cx=cx,
            cy=cy,
            width=width,
            height=height,
            camera_index=None if camera_index is None else int(camera_index),
            timestep_index=timestep_index,
            time=time,
            fg_mask=extras["fg_mask_path"],
            semantic=extras["semantic_path"],
            canonical=extras["canonical_path"],
            flame_param=None if flame_param is None else _resolve(root, flame_param, default_suffix=None),
        )

    # ---------------------------------------------------------------------------------------------- geometry

    def _world_transform(self, frames: list[_Frame]) -> tuple[Float[Tensor, "3 4"], float]:
        """Centring/orientation transform and scale of the world, from all frames' poses together."""
        poses = torch.from_numpy(np.stack([f.pose for f in frames])).float()
        center_method = self.config.center_method
        try:
            oriented, transform = camera_utils.auto_orient_and_center_poses(
                poses, method=self.config.orientation_method, center_method=center_method
            )
        except RuntimeError:  # torch.linalg: the optical axes are (nearly) parallel, there is no focus point.
            CONSOLE.print("[bold yellow]The cameras' optical axes do not converge; centring on the camera centres.")
            center_method = "poses"
            oriented, transform = camera_utils.auto_orient_and_center_poses(
                poses, method=self.config.orientation_method, center_method=center_method
            )

        scale = 1.0
        if self.config.auto_scale_poses:
            # The cameras frame the head: at the focus distance, the half-extent of each view bounds the
            # region of interest. Giving that region radius 1 fits the head in the unit scene box with room
            # to spare, whereas nerfstudio's "largest camera offset = 1" would shrink the head to a few voxels.
            radius = 0.0
            if center_method == "focus":
                distance = torch.linalg.norm(oriented[:, :3, 3], dim=-1)
                half_extent = torch.tensor([max(f.width / (2 * f.fx), f.height / (2 * f.fy)) for f in frames])
                radius = float(torch.median(distance * half_extent))
            if not radius > 1e-8:
                # No focus point: nerfstudio's convention, the farthest camera coordinate becomes 1.
                radius = float(torch.max(torch.abs(oriented[:, :3, 3])))
            if radius > 1e-8:
                scale = 1.0 / radius
        return transform, scale * self.config.scale_factor


# --------------------------------------------------------------------------------------------------- helpers


def _note_thin_capture(train: list[_Frame], path: Path) -> None:
    """One line for each thing a capture may lack that it can be trained without (a VHAP export has all of them),
    so that a key misnamed by another exporter, or a rig that went missing, does not pass unnoticed."""
    if all(f.fg_mask is None for f in train):
        CONSOLE.print(
            f"[bold yellow]{path} names no foreground masks (fg_mask_path), so the recon trains without its mask loss "
            "and may keep the backdrop in the head's box; add fg_mask_path to every frame if the capture has masks "
            "(docs/data_format.md)."
        )
    cameras = {f.camera_index for f in train}
    if len(cameras) == 1:
        CONSOLE.print(
            f"[bold yellow]{path}: every training image is from camera {cameras.pop()}, so the avatar is seen from one "
            "side only and other views of it are guesses; train on a capture with several cameras for a whole head."
        )


def _note_unseen_timesteps(split: str, timesteps: list[int], trained: list[int]) -> None:
    """One line when ``split`` shows timesteps that no training image shows (VHAP's test split is the last ~30 % of
    a sequence), saying what the avatar renders there."""
    unseen = sorted(set(timesteps) - set(trained))
    if not unseen:
        return
    CONSOLE.print(
        f"The {split} split shows {len(unseen)} timestep(s) no training image shows ({unseen[0]}..{unseen[-1]}): the "
        "avatar renders each with the code of the nearest trained frame, holding that frame's pose and expression, "
        "so its scores there measure how far the performance moved on, not the recon's fit."
    )


def capture_fingerprint(data: Path) -> str | None:
    """A digest of the capture at ``data``: its transforms files and its first training image, read as bytes.

    Copies of one capture share it wherever they lie, so the edit can tell its recon's capture from another one
    without comparing paths (a capture may be moved between the recon and the edit).

    Returns:
        The digest, or None when ``data`` holds no capture.
    """
    try:
        files = AvatarStudioDataParser(AvatarStudioDataParserConfig(data=Path(data)))._split_files()
        digest = hashlib.sha256()
        for split in SPLITS:
            if files[split] is not None:
                digest.update(split.encode() + files[split].read_bytes())  # type: ignore[union-attr]
        # Two captures from one rig can have the same transforms files; their pictures differ.
        train = files["train"]
        first = json.loads(train.read_bytes())["frames"][0]["file_path"]  # type: ignore[union-attr]
        image = _resolve(train.parent, first, default_suffix=None)  # type: ignore[union-attr]
        if not image.is_file():
            image = _resolve(train.parent, first, default_suffix=".png")  # type: ignore[union-attr]
        digest.update(image.read_bytes())
    except (CaptureFormatError, OSError, ValueError, LookupError, TypeError):
        return None
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            meta = json.load(file)
    except json.JSONDecodeError as err:
        raise CaptureFormatError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})."
        ) from None
    except OSError as err:
        raise CaptureFormatError(f"{path} cannot be read ({err.strerror}).") from None
    if not isinstance(meta, dict):
        raise CaptureFormatError(f"{path} must hold a JSON object at the top level, not {type(meta).__name__}.")
    return meta


def _detect_format(meta: dict, path: Path) -> Literal["vhap", "dnerf"]:
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise CaptureFormatError(f"{path} has no frames (empty split).")
    first = frames[0] if isinstance(frames[0], dict) else {}
    if "timestep_index" in first:
        return "vhap"
    if "time" in first:
        return "dnerf"
    raise CaptureFormatError(
        f"{path}, frame 0 ({first.get('file_path')}): the frame has neither timestep_index nor time, so its time "
        "in the performance is unknown."
    )


def _assign_splits(
    read: dict[str, list[_Frame]], files: dict[str, Path | None], holdout_camera: int | None
) -> dict[str, list[_Frame]]:
    """Train/val/test frames: from their own files, else val and test stand in for each other, else the
    held-out camera's frames are split off the training file."""
    if "val" in read or "test" in read:
        val = read.get("val", read.get("test"))
        test = read.get("test", read.get("val"))
        return {"train": read["train"], "val": val, "test": test}  # type: ignore[dict-item]
    frames = read["train"]
    if holdout_camera is None:
        return {"train": frames, "val": frames, "test": frames}
    held = [f for f in frames if f.camera_index == holdout_camera]
    kept = [f for f in frames if f.camera_index != holdout_camera]
    present = sorted({f.camera_index for f in frames if f.camera_index is not None})
    if not held:
        raise CaptureFormatError(
            f"{files['train']} has no frames from held-out camera {holdout_camera} and there is no "
            f"transforms_val.json (cameras present: {_ranges(present)}); pass --holdout-camera with one of them, "
            "or None to evaluate on the training frames."
        )
    if not kept:
        raise CaptureFormatError(
            f"{files['train']} has only frames from held-out camera {holdout_camera}, which leaves the train split "
            "empty; pass --holdout-camera None or another camera."
        )
    return {"train": kept, "val": held, "test": held}


def _guess_frontal_camera(frames: list[_Frame], poses: Float[Tensor, "num_frames 3 4"]) -> int | None:
    """The camera nearest to the front of the head, or None when the rig has no front side.

    Head rigs put their cameras on a front arc, so the mean horizontal direction from the scene centre
    (the origin after centring) to the cameras is the face's forward direction. When the cameras surround
    the head, that mean is short and the front is unknown: return None (a capture can name its frontal
    camera with the top-level key frontal_camera_index).
    """
    centers = poses[:, :3, 3]
    norms = torch.linalg.norm(centers, dim=-1, keepdim=True)
    if (norms <= 1e-8).any():
        return None
    directions = centers / norms
    up = poses[:, :3, 1].mean(dim=0)
    if torch.linalg.norm(up) <= 1e-8:
        return None
    up = up / torch.linalg.norm(up)
    mean = directions.mean(dim=0)
    forward = mean - (mean @ up) * up
    if torch.linalg.norm(forward) < MIN_FRONT_SIDEDNESS:
        return None
    forward = forward / torch.linalg.norm(forward)
    best = int(torch.argmax(directions @ forward))
    return frames[best].camera_index


def _apply_transform(frames: list[_Frame], transform: Tensor, scale: float) -> Float[Tensor, "num_frames 3 4"]:
    """Camera-to-world poses of frames in the dataparser's world: transform, then scale the positions."""
    if not frames:
        return torch.zeros((0, 3, 4))
    poses = transform @ torch.from_numpy(np.stack([f.pose for f in frames])).float()
    poses[:, :3, 3] *= scale
    return poses


def _resolve(root: Path, file_path: str, default_suffix: str | None) -> Path:
    """The path of a file named in a JSON: relative to the JSON's folder, '..' folded away where that is safe."""
    path = root / Path(file_path)
    if default_suffix is not None and path.suffix == "":
        path = path.with_name(path.name + default_suffix)
    if ".." in path.parts:
        # Combined VHAP exports point into sibling folders ('../<sequence>/images/...'). Fold the '..' away so the
        # path reads well and compares equal to the same file's other paths, unless a symlinked folder makes the
        # folded path another file than the one the OS opens.
        folded = Path(os.path.normpath(path))
        if folded.resolve() == path.resolve():
            path = folded
    return path


def _missing_folder(path: Path) -> Path | None:
    """The outermost missing folder above a missing file, or None when the file's own folder exists."""
    missing = None
    for folder in path.parents:
        if folder.exists():
            break
        missing = folder
    return missing


def _focal(values: dict, focal_key: str, angle_key: str, size: int) -> float | None:
    """A focal length in pixels from values' focal_key, else from its field of view angle_key; None if neither."""
    if values.get(focal_key) is not None:
        return float(values[focal_key])
    if values.get(angle_key) is not None:
        return 0.5 * size / math.tan(0.5 * float(values[angle_key]))
    return None


def _image_size(path: Path, fail: Any) -> tuple[int, int]:
    """(width, height) from the file header only; PIL does not decode pixels until asked."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        raise fail(f"the file {path} is not a readable image") from None


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON booleans excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_index(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer() and value >= 0


def _all_or_none(paths: list[Path | None]) -> list[Path] | None:
    """The split's paths when every frame has one, else None (a partial set is unusable per ray)."""
    if all(p is not None for p in paths):
        return list(paths)  # type: ignore[arg-type]
    return None


def _ranges(values: list[int]) -> str:
    return ", ".join(str(v) for v in values) if len(values) <= 12 else f"{values[0]}..{values[-1]}"
