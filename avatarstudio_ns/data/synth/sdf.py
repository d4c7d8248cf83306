"""Signed distance primitives and smooth booleans on split coordinates (x, y, z tensors).

Coordinates travel as three flat tensors rather than one (N, 3) tensor: every primitive is a handful
of elementwise ops, and this avoids the gathers and reductions over a trailing axis, which dominate
the cost of sphere tracing on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

Vec3 = tuple[float, float, float]


def sphere(x: Tensor, y: Tensor, z: Tensor, center: Vec3, radius: float) -> Tensor:
    """Exact distance to a sphere."""
    return torch.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2) - radius


def ellipsoid(x: Tensor, y: Tensor, z: Tensor, center: Vec3, radii: Vec3) -> Tensor:
    """Approximate distance to an axis-aligned ellipsoid (first-order bound, exact on the surface).

    Uses d = k0 (k0 - 1) / k1 with k0 = |p / r| and k1 = |p / r^2|, which has the right zero set and
    nearly unit gradient near it, good enough for sphere tracing with a step factor below one.
    """
    px = (x - center[0]) / radii[0]
    py = (y - center[1]) / radii[1]
    pz = (z - center[2]) / radii[2]
    k0 = torch.sqrt(px * px + py * py + pz * pz)
    k1 = torch.sqrt((px / radii[0]) ** 2 + (py / radii[1]) ** 2 + (pz / radii[2]) ** 2).clamp_min(1e-9)
    return k0 * (k0 - 1.0) / k1


def vertical_capsule(x: Tensor, y: Tensor, z: Tensor, top: Vec3, bottom: Vec3, radius: float) -> Tensor:
    """Exact distance to a capsule between two points."""
    ax, ay, az = bottom[0] - top[0], bottom[1] - top[1], bottom[2] - top[2]
    length2 = ax * ax + ay * ay + az * az
    px, py, pz = x - top[0], y - top[1], z - top[2]
    h = ((px * ax + py * ay + pz * az) / length2).clamp(0.0, 1.0)
    return torch.sqrt((px - h * ax) ** 2 + (py - h * ay) ** 2 + (pz - h * az) ** 2) - radius


def smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth union with blend width k (metres)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smax(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Smooth intersection (use smax(a, -b) to carve b out of a)."""
    return -smin(-a, -b, k)


def smoothstep(edge0: float, edge1: float, x: Tensor) -> Tensor:
    """Cubic Hermite step from 0 at edge0 to 1 at edge1 (edge0 > edge1 gives a falling step)."""
    s = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)
