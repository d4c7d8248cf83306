"""The capture rig: cameras on a ring around the head, two heights, one looking straight at the face.

World frame: metres, y up, the neutral head's face looks toward +z. Camera-to-world matrices use the
OpenGL convention (camera x right, y up, looking down -z), as the capture format asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

LOOK_AT = np.array([0.0, -0.02, 0.0])
"""World point every camera looks at: the middle of the head-and-neck bust."""


@dataclass
class Rig:
    """Pinhole cameras sharing intrinsics."""

    camera_to_world: np.ndarray
    """(C, 4, 4) camera-to-world, OpenGL convention."""
    fx: float
    """Focal length in pixels along x."""
    fy: float
    """Focal length in pixels along y."""
    cx: float
    """Principal point x, pixels."""
    cy: float
    """Principal point y, pixels."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    frontal_camera_index: int = 0
    """The camera that looks straight at the neutral face."""

    @property
    def num_cameras(self) -> int:
        return int(self.camera_to_world.shape[0])

    def pixel_rays(
        self, camera: Int[Tensor, "*bs"], u: Float[Tensor, "*bs"], v: Float[Tensor, "*bs"]
    ) -> tuple[Float[Tensor, "*bs 3"], Float[Tensor, "*bs 3"]]:
        """World-space ray origins and unit directions through image points.

        Args:
            camera: camera index of each ray.
            u: horizontal image coordinate in pixels (pixel centres at +0.5).
            v: vertical image coordinate in pixels, growing downward.
        """
        c2w = torch.as_tensor(self.camera_to_world, dtype=torch.float32)[camera]
        # OpenGL camera: +x right, +y up, looks down -z; image rows grow downward.
        dirs_cam = torch.stack([(u - self.cx) / self.fx, -(v - self.cy) / self.fy, -torch.ones_like(u)], dim=-1)
        dirs = torch.einsum("nij,nj->ni", c2w[:, :3, :3], dirs_cam)
        return c2w[:, :3, 3], dirs / dirs.norm(dim=-1, keepdim=True)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world matrix of a camera at ``eye`` looking at ``target``, world y up."""
    up = np.array([0.0, 1.0, 0.0])
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, back, eye
    return c2w


def make_rig(
    num_cameras: int = 24,
    resolution: int = 256,
    distance: float = 1.0,
    elevations_deg: tuple[float, float] = (0.0, 22.0),
    half_extent: float = 0.165,
    width: int | None = None,
    height: int | None = None,
) -> Rig:
    """A ring of cameras over 360 degrees at two alternating heights.

    Camera ``num_cameras // 2`` sits at azimuth 0 (in front of the face) and elevation 0: it is the
    frontal camera. Camera i sits at azimuth 360 * (i - frontal) / num_cameras degrees, at the first
    elevation when (i - frontal) is even and the second when odd. With 24 cameras camera 8 is a
    front-three-quarter view (azimuth -60 degrees), the usual held-out camera.

    Args:
        num_cameras: cameras in the ring.
        resolution: square image size in pixels (the width and height that are not given).
        distance: camera distance from the look-at point, metres.
        elevations_deg: the two ring heights, degrees above the horizon.
        half_extent: half the width of the world seen at the look-at distance, metres; sets the
            focal length so that the head (about 0.2 m wide with hair) fills most of the frame's shorter side.
        width: image width in pixels; None: ``resolution``.
        height: image height in pixels; None: ``resolution``.
    """
    if num_cameras < 1:
        raise ValueError("num_cameras must be at least 1.")
    frontal = num_cameras // 2
    c2ws = []
    for i in range(num_cameras):
        azimuth = math.radians(360.0 * (i - frontal) / num_cameras)
        elevation = math.radians(elevations_deg[(i - frontal) % 2])
        direction = np.array(
            [math.sin(azimuth) * math.cos(elevation), math.sin(elevation), math.cos(azimuth) * math.cos(elevation)]
        )
        c2ws.append(look_at(LOOK_AT + distance * direction, LOOK_AT))
    width, height = width or resolution, height or resolution
    # The shorter side spans 2 * half_extent at the look-at point, so the head is whole in view at any aspect (the
    # longer side only shows more backdrop); square pixels and a centred principal point, as real rigs have.
    focal = 0.5 * min(width, height) * distance / half_extent
    return Rig(
        camera_to_world=np.stack(c2ws),
        fx=focal,
        fy=focal,
        cx=width / 2.0,
        cy=height / 2.0,
        width=width,
        height=height,
        frontal_camera_index=frontal,
    )
