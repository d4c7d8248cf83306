"""Storage of per-pixel canonical surface points as 16-bit PNGs.

Encoding: each pixel's canonical point (x, y, z) in metres, in the head's canonical frame (see head.py),
is quantised inside the box [-CANONICAL_BOX, CANONICAL_BOX]^3 to a uint16 per channel:

    value = 1 + round((coord + CANONICAL_BOX) / (2 * CANONICAL_BOX) * 65534)

Value 0 in all three channels means background (no surface). Channels are stored R=x, G=y, B=z in a
16-bit RGB PNG (about 7.6 micrometre steps). ``load_canonical_points`` inverts this, with NaN on
background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatarstudio_ns.atomic import atomic_write_bytes

CANONICAL_BOX = 0.25
"""Half-size of the quantisation box, metres; the head fits in about +-0.2."""
_LEVELS = 65534


def encode_canonical_points(points: np.ndarray) -> np.ndarray:
    """(H, W, 3) float metres with NaN on background -> (H, W, 3) uint16 codes."""
    points = np.asarray(points, dtype=np.float64)
    valid = np.isfinite(points).all(axis=-1)
    scaled = (np.clip(np.nan_to_num(points), -CANONICAL_BOX, CANONICAL_BOX) + CANONICAL_BOX) / (2 * CANONICAL_BOX)
    codes = 1 + np.round(scaled * _LEVELS).astype(np.uint16)
    codes[~valid] = 0
    return codes


def decode_canonical_points(codes: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint16 codes -> (H, W, 3) float32 metres with NaN on background."""
    codes = np.asarray(codes)
    points = (codes.astype(np.float32) - 1.0) / _LEVELS * (2 * CANONICAL_BOX) - CANONICAL_BOX
    points[(codes == 0).all(axis=-1)] = np.nan
    return points


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an 8- or 16-bit image (OpenCV's BGR order) as a PNG, atomically (the bytes ``cv2.imwrite`` writes)."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"Could not encode {path} as a PNG.")
    atomic_write_bytes(Path(path), data.tobytes())


def save_canonical_points(path: Path, points: np.ndarray) -> None:
    """Write (H, W, 3) canonical points (NaN on background) as a 16-bit RGB PNG."""
    # OpenCV is the writer at hand that keeps 16 bits per channel; it stores BGR order.
    write_png(path, encode_canonical_points(points)[..., ::-1])


def load_canonical_points(path: str | Path) -> np.ndarray:
    """Read a canonical-point PNG written by ``avatarstudio synth``.

    Returns:
        (H, W, 3) float32 canonical points in metres, NaN on background.
    """
    codes = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if codes is None:
        raise FileNotFoundError(f"Could not read canonical points from {path}.")
    if codes.dtype != np.uint16 or codes.ndim != 3 or codes.shape[-1] != 3:
        raise ValueError(f"{path} is not a 16-bit RGB canonical-point PNG (got {codes.dtype}, shape {codes.shape}).")
    return decode_canonical_points(codes[..., ::-1])
