"""Renders of trained avatars: orbit paths over time, side-by-side videos and image grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence

import imageio.v3 as iio
import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.models.base_model import Model
from torch import Tensor

from avatarstudio_ns.atomic import atomic_save


def _rotation_about(axis: Float[Tensor, "3"], angle: float) -> Float[Tensor, "3 3"]:
    """Rotation matrix of ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    x, y, z = axis.tolist()
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return torch.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def orbit_path(
    cameras: Cameras,
    start_index: int,
    num_frames: int,
    max_angle_deg: float = 40.0,
    resolution: int | None = None,
) -> Cameras:
    """A camera swinging left and right about the scene centre while time runs from 0 to 1.

    The swing axis is the rig's mean up direction, so the path stays level whatever convention the
    capture's world frame uses.

    Args:
        cameras: the capture's cameras (poses centred on the head by the dataparser).
        start_index: the camera the swing starts from (e.g. the frontal one).
        num_frames: frames of the path.
        max_angle_deg: amplitude of the swing.
        resolution: longer image side of the path's camera; the capture's size when None.
    """
    c2w = cameras.camera_to_worlds.cpu()
    up = torch.nn.functional.normalize(c2w[:, :3, 1].mean(0), dim=0)
    base = c2w[start_index]
    poses = []
    for i in range(num_frames):
        angle = math.radians(max_angle_deg) * math.sin(2 * math.pi * i / max(num_frames, 1))
        rot = _rotation_about(up, angle)
        poses.append(torch.cat([rot @ base[:, :3], (rot @ base[:, 3:4])], dim=1))
    cam = cameras[start_index : start_index + 1]
    path = Cameras(
        camera_to_worlds=torch.stack(poses),
        fx=cam.fx.cpu().expand(num_frames, 1).clone(),
        fy=cam.fy.cpu().expand(num_frames, 1).clone(),
        cx=cam.cx.cpu().expand(num_frames, 1).clone(),
        cy=cam.cy.cpu().expand(num_frames, 1).clone(),
        width=cam.width.cpu().expand(num_frames, 1).clone(),
        height=cam.height.cpu().expand(num_frames, 1).clone(),
        camera_type=cam.camera_type.cpu().expand(num_frames, 1).clone(),
        times=torch.linspace(0.0, 1.0, num_frames)[:, None],
    )
    if resolution is not None:
        path.rescale_output_resolution(resolution / max(int(cam.width[0, 0]), int(cam.height[0, 0])))
    return path


@torch.no_grad()
def render_rgb(model: Model, cameras: Cameras) -> List[np.ndarray]:
    """RGB renders [H, W, 3] uint8 of each camera (with its time) by ``model``."""
    model.eval()
    frames = []
    for i in range(len(cameras)):
        outputs = model.get_outputs_for_camera(cameras[i : i + 1].to(model.device))
        rgb = outputs["rgb"].clamp(0, 1).cpu().numpy()
        frames.append((rgb * 255 + 0.5).astype(np.uint8))
    return frames


def side_by_side(left: Sequence[np.ndarray], right: Sequence[np.ndarray], gap: int = 4) -> List[np.ndarray]:
    """Frames of ``left`` and ``right`` next to each other, separated by a white gap."""
    out = []
    for a, b in zip(left, right, strict=True):
        spacer = np.full((a.shape[0], gap, 3), 255, dtype=np.uint8)
        out.append(np.concatenate([a, spacer, b], axis=1))
    return out


def image_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4) -> np.ndarray:
    """One image of ``rows`` of equally sized images, separated by white gaps."""
    lines = []
    for row in rows:
        spacer = np.full((row[0].shape[0], gap, 3), 255, dtype=np.uint8)
        items = []
        for j, image in enumerate(row):
            items.extend([spacer, image] if j else [image])
        lines.append(np.concatenate(items, axis=1))
    width = max(line.shape[1] for line in lines)
    hspacer = np.full((gap, width, 3), 255, dtype=np.uint8)
    out = []
    for i, line in enumerate(lines):
        out.extend([hspacer, line] if i else [line])
    return np.concatenate(out, axis=0)


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 12) -> Path:
    """Writes ``frames`` as an mp4 or gif (by the suffix of ``path``) through a temporary file."""
    # heavy (mediapy imports matplotlib and IPython, ~500 modules): imported when a video is written, so the
    # commands' --help stays fast
    import mediapy

    path = Path(path)

    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(frames), duration=1000 / fps, loop=0)
        else:
            mediapy.write_video(tmp, np.stack(frames), fps=fps)

    return atomic_save(path, write)
