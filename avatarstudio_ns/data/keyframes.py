"""Keyframe selection (METHOD section 2, paper section 3.2.2) and the keyframe manifest.

The keyframe set K is every camera of the first timestep, plus ``n_time`` frames seen from the frontal
camera, chosen from the per-frame codes e_j so that the personalised model sees the most distinct expressions.
The paper takes the frames farthest from the mean code, skipping neighbours of chosen frames; on a long
capture those can all sit around one peak of the performance (one wide-open mouth, its neighbours two frames
away). The default therefore picks by farthest point in code space: each new frame is the one farthest from
every frame already covered (the first frame included), so the picks spread over the performance's distinct
expressions whatever its length.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from avatarstudio_ns.atomic import atomic_write_text

logger = logging.getLogger(__name__)

FRAME_CODES_KEY = "_model.frame_codes.codes"
"""Key of the per-frame codes [num_timesteps, dim] in a recon checkpoint's pipeline state dict."""
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Keyframe:
    """One (camera, time) keyframe and its personalisation prompt."""

    camera_index: int
    """Camera of the rig."""
    timestep_index: int
    """Frame number of the performance."""
    time: float
    """Normalised time in [0, 1]."""
    identifier: str = ""
    """Its rare identifier (set by personalisation)."""
    prompt: str = ""
    """"photo of a [identifier] [class noun]"."""
    image_path: str | None = None
    """Image trained on, relative to the manifest's folder."""
    source: str = "first_frame"
    """Why it was chosen: ``first_frame`` (a camera of the first timestep) or ``time`` (a deviant frame)."""


@dataclass
class KeyframeSelectionConfig:
    """How keyframes are chosen."""

    n_time: int = 6
    """Frames added from the frontal camera (the paper: 6)."""
    rule: Literal["farthest", "deviant"] = "farthest"
    """How the frames are chosen from the per-frame codes. farthest (default): each frame is the one farthest (L1)
    from every frame already chosen or covered by the first-frame keyframes, so the picks cover the performance's
    distinct expressions; deviant: the paper's rule, the frames farthest from the mean code (on a long capture they
    can cluster around one peak)."""
    min_gap: int = 1
    """Chosen frames are at least ``min_gap + 1`` frames apart: frames within ``min_gap`` of a chosen one
    (the first timestep included) count as near-duplicates and are skipped."""
    time_aware: bool = True
    """Add the deviant frames; off is the "no time stamps" ablation (cameras of the first frame only)."""
    frontal_camera: int | None = None
    """Frontal camera index; None: take it from the capture metadata (``frontal_camera_index``)."""
    cameras: Sequence[int] | None = field(default=None)
    """Restrict the first-frame keyframes to these cameras; None: all cameras of the first timestep."""


def frame_deviation(codes: Float[Tensor, "T D"]) -> Float[Tensor, " T"]:
    """Absolute difference of each frame's code from the mean code, summed over dimensions (L1)."""
    codes = codes.detach().float()
    return (codes - codes.mean(dim=0, keepdim=True)).abs().sum(dim=-1)


def select_deviant_frames(
    codes: Float[Tensor, "T D"], n: int, min_gap: int = 1, excluded: Iterable[int] = (0,), eligible=None
) -> list[int]:
    """Greedily pick the ``n`` code rows farthest from the mean, skipping near-duplicates.

    Args:
        codes: Per-frame codes, one row per frame in performance order.
        n: How many rows to pick.
        min_gap: Rows within ``min_gap`` of an already chosen or excluded row are skipped.
        excluded: Rows already covered (the first timestep is, by the first-frame keyframes).
        eligible: Optional set of rows allowed at all (e.g. those the frontal camera saw).

    Returns:
        Chosen rows, most deviant first (fewer than ``n`` when the gaps leave no candidates).
    """
    blocked = list(excluded)
    chosen: list[int] = []
    order = torch.argsort(frame_deviation(codes), descending=True, stable=True).tolist()
    for j in order:
        if len(chosen) == n:
            break
        if eligible is not None and j not in eligible:
            continue
        if any(abs(j - k) <= min_gap for k in blocked):
            continue
        chosen.append(j)
        blocked.append(j)
    return chosen


def select_farthest_frames(
    codes: Float[Tensor, "T D"], n: int, min_gap: int = 1, excluded: Iterable[int] = (0,), eligible=None
) -> list[int]:
    """Greedily pick ``n`` code rows by farthest point sampling in code space (L1 distance).

    Each pick is the eligible row whose nearest already covered row (an excluded or chosen one) is farthest
    away; with nothing covered, the first pick is the row farthest from the mean code. The arguments are those of
    :func:`select_deviant_frames`.

    Returns:
        Chosen rows in the order picked (fewer than ``n`` when the gaps leave no candidates).
    """
    codes = codes.detach().float()
    rows = torch.arange(codes.shape[0])
    allowed = torch.ones(codes.shape[0], dtype=torch.bool)
    if eligible is not None:
        allowed &= torch.isin(rows, torch.as_tensor(sorted(eligible), dtype=torch.long))
    covered = [j for j in excluded if 0 <= j < codes.shape[0]]
    if covered:
        nearest = torch.cdist(codes, codes[covered], p=1).min(dim=1).values
    else:
        nearest = frame_deviation(codes)
    for j in excluded:
        allowed &= (rows - j).abs() > min_gap
    chosen: list[int] = []
    while len(chosen) < n and bool(allowed.any()):
        # Ties go to the earliest row (argmax of the first maximum), so the choice is deterministic.
        j = int(torch.where(allowed, nearest, torch.full_like(nearest, -1.0)).argmax())
        chosen.append(j)
        allowed &= (rows - j).abs() > min_gap
        nearest = torch.minimum(nearest, (codes - codes[j]).abs().sum(dim=-1))
    return chosen


def select_keyframes(
    codes: Float[Tensor, "T D"] | None,
    available: Iterable[tuple[int, int]],
    frontal_camera: int | None,
    config: KeyframeSelectionConfig | None = None,
    code_timesteps: Sequence[int] | None = None,
) -> list[Keyframe]:
    """Choose the keyframe set K.

    Args:
        codes: Per-frame codes e_j (row j belongs to ``code_timesteps[j]``); may be None when not time-aware.
        available: The capture's (camera_index, timestep_index) pairs (with images).
        frontal_camera: The frontal camera from the capture metadata; ``config.frontal_camera`` overrides it.
        config: Selection settings.
        code_timesteps: Timestep index of each code row; default: the capture's sorted distinct timesteps
            when their count equals the number of rows, else row j is timestep j.

    Returns:
        First-timestep keyframes (by camera), then the frontal frames in the order ``config.rule`` picked them.
    """
    config = config or KeyframeSelectionConfig()
    pairs = sorted(set((int(c), int(t)) for c, t in available))
    if not pairs:
        raise ValueError("No (camera, timestep) pairs to choose keyframes from.")
    timesteps = sorted({t for _, t in pairs})
    first, last = timesteps[0], timesteps[-1]

    def time_of(t: int) -> float:
        return t / last if last > 0 else 0.0

    first_cameras = [c for c, t in pairs if t == first and (config.cameras is None or c in config.cameras)]
    keyframes = [Keyframe(c, first, time_of(first), source="first_frame") for c in first_cameras]
    if not config.time_aware or config.n_time <= 0:
        return keyframes

    frontal = config.frontal_camera if config.frontal_camera is not None else frontal_camera
    if frontal is None:
        raise ValueError(
            "Time-aware keyframes need the frontal camera: the capture has no frontal_camera_index, "
            "so name it (frontal_camera / --frontal-camera)."
        )
    if codes is None:
        raise ValueError("Time-aware keyframes need the per-frame codes of the reconstruction.")
    if code_timesteps is None:
        code_timesteps = timesteps if len(timesteps) == codes.shape[0] else list(range(codes.shape[0]))
    if len(code_timesteps) != codes.shape[0]:
        raise ValueError(f"{len(code_timesteps)} code timesteps for {codes.shape[0]} code rows.")
    row_of = {int(t): j for j, t in enumerate(code_timesteps)}
    frontal_timesteps = {t for c, t in pairs if c == frontal}
    if not frontal_timesteps:
        raise ValueError(f"Frontal camera {frontal} has no images in the capture.")
    eligible = {row_of[t] for t in frontal_timesteps if t in row_of}
    select = select_farthest_frames if config.rule == "farthest" else select_deviant_frames
    excluded = [row_of[first]] if first in row_of else []
    rows = select(codes, config.n_time, config.min_gap, excluded, eligible)
    if len(rows) < config.n_time:
        logger.warning(
            "Only %d of %d time keyframes fit: frontal camera %d sees %d frame(s), frame %d is a keyframe already and "
            "picks lie more than %d frame(s) apart (--pipeline.keyframes.min-gap), so the edit sees fewer moments.",
            len(rows),
            config.n_time,
            frontal,
            len(frontal_timesteps),
            first,
            config.min_gap,
        )
    for j in rows:
        t = int(code_timesteps[j])
        keyframes.append(Keyframe(frontal, t, time_of(t), source="time"))
    return keyframes


def frame_codes_from_checkpoint(path: Path, key: str = FRAME_CODES_KEY) -> Float[Tensor, "T D"]:
    """Read the per-frame codes from a nerfstudio checkpoint (``step-*.ckpt``) of the recon model."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    pipeline = state.get("pipeline", state)
    if key not in pipeline:
        # Checkpoints saved from a DataParallel / DDP pipeline prefix keys with "module.".
        matches = [k for k in pipeline if k.endswith(key.lstrip("_"))]
        if not matches:
            raise KeyError(f"{path} has no per-frame codes ({key}); is it an avatarstudio-recon checkpoint?")
        key = matches[0]
    return pipeline[key].detach().float()


def write_keyframe_manifest(path: Path, keyframes: Sequence[Keyframe], **extra) -> None:
    """Write the keyframes (and any extra top-level fields) as JSON, atomically."""
    data = {"version": MANIFEST_VERSION, **extra, "keyframes": [asdict(k) for k in keyframes]}
    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


def read_keyframe_manifest(path: Path) -> list[Keyframe]:
    """Read keyframes written by :func:`write_keyframe_manifest`."""
    data = json.loads(Path(path).read_text())
    names = set(Keyframe.__dataclass_fields__)
    return [Keyframe(**{k: v for k, v in item.items() if k in names}) for item in data["keyframes"]]


def _view_directions(dataset) -> Float[Tensor, "n 3"]:
    """Viewing direction of each image's camera (OpenGL cameras look down -z)."""
    return -dataset.cameras.camera_to_worlds[:, :3, 2]


def training_frontal_camera(train_dataset, eval_dataset, frontal: int | None) -> int | None:
    """The frontal camera, or the training camera looking most nearly its way when it is held out.

    The frontal camera of a VHAP export (camera 8) is usually the held-out one: the edit never renders its
    images in training, so its nearest training neighbour stands in for it.

    Raises:
        ValueError: when the frontal camera is in neither dataset.
    """
    train_cameras = train_dataset.metadata["camera_indices"]
    if frontal is None or bool((train_cameras == frontal).any()):
        return frontal
    held = torch.nonzero(eval_dataset.metadata["camera_indices"] == frontal).flatten() if eval_dataset else []
    if len(held) == 0:
        raise ValueError(f"The frontal camera {frontal} is in no split of the capture; name another one.")
    scores = _view_directions(train_dataset) @ _view_directions(eval_dataset)[int(held[0])]
    nearest = int(train_cameras[int(scores.argmax())])
    logger.warning(
        "The frontal camera %d is held out of training; camera %d, its nearest, stands in.", frontal, nearest
    )
    return nearest


def avatar_keyframes(
    codes: Float[Tensor, "T D"], train_dataset, eval_dataset, config: KeyframeSelectionConfig
) -> list[Keyframe]:
    """The keyframe set of a reconstructed avatar over its training images.

    Args:
        codes: The avatar's per-frame codes (row j is timestep j, as the recon keeps them).
        train_dataset: The capture's training images (an avatarstudio dataset with camera / timestep indices).
        eval_dataset: Its held-out images (to place a held-out frontal camera); may be None.
        config: Selection settings.
    """
    metadata = train_dataset.metadata
    available = zip(metadata["camera_indices"].tolist(), metadata["timestep_indices"].tolist(), strict=True)
    frontal = config.frontal_camera if config.frontal_camera is not None else metadata.get("frontal_camera_index")
    if config.time_aware:
        frontal = training_frontal_camera(train_dataset, eval_dataset, frontal)
    return select_keyframes(
        codes.detach().cpu(), list(available), frontal, replace(config, frontal_camera=None), list(range(len(codes)))
    )


def keyframe_image_index(dataset, keyframe: Keyframe) -> int:
    """Index in ``dataset`` of the keyframe's image.

    Raises:
        KeyError: when the dataset has no image of that camera at that timestep.
    """
    metadata = dataset.metadata
    match = (metadata["camera_indices"] == keyframe.camera_index) & (
        metadata["timestep_indices"] == keyframe.timestep_index
    )
    hits = torch.nonzero(match).flatten()
    if len(hits) == 0:
        raise KeyError(f"no image of camera {keyframe.camera_index} at timestep {keyframe.timestep_index}")
    return int(hits[0])


def keyframe_background(dataset) -> Float[Tensor, "3"]:
    """The backdrop the captured keyframe images are composited onto: the capture's, white when it names none."""
    background = dataset.metadata.get("background_color")
    return torch.ones(3) if background is None else torch.as_tensor(background, dtype=torch.float32)


def _image_and_foreground(dataset, keyframe: Keyframe) -> tuple[Float[Tensor, "3 h w"], Float[Tensor, "h w"] | None]:
    """The keyframe's image composited onto the backdrop, and its foreground (alpha times mask; None without either)."""
    background = keyframe_background(dataset)
    data = dataset[keyframe_image_index(dataset, keyframe)]
    image = data["image"][..., :3].float()
    foreground = None
    if data["image"].shape[-1] == 4:
        alpha = data["image"][..., 3:].float()
        image = image * alpha + background * (1 - alpha)
        foreground = alpha[..., 0]
    if "fg_mask" in data:
        mask = data["fg_mask"].float()
        image = image * mask + background * (1 - mask)
        foreground = mask[..., 0] if foreground is None else foreground * mask[..., 0]
    return image.permute(2, 0, 1).contiguous(), foreground


def keyframe_images(dataset, keyframes: Sequence[Keyframe]) -> list[Float[Tensor, "3 h w"]]:
    """The captured keyframe images in [0, 1], the head masked onto the rig backdrop where masks exist.

    The edit and ``avatarstudio personalize`` both take their images from here, so the same keyframes give
    the same personalisation cache key.
    """
    return [_image_and_foreground(dataset, keyframe)[0] for keyframe in keyframes]


def keyframe_foregrounds(dataset, keyframes: Sequence[Keyframe]) -> list[Float[Tensor, "h w"] | None]:
    """Where the head is in each captured keyframe image (the mask times the alpha, in [0, 1]); None where the capture
    has neither.

    They frame the square the diffusion model sees of each keyframe image
    (:func:`~avatarstudio_ns.guidance.imaging.square_boxes`), as the render's accumulation frames it in the edit.
    """
    return [_image_and_foreground(dataset, keyframe)[1] for keyframe in keyframes]
