"""The procedural head: a smooth union of analytic SDF parts, each with a semantic label and an albedo.

Frames, all in metres:
- head frame: the posed head with the rigid pose removed (world = R (head - pivot) + pivot, see
  performance.py); the face looks toward +z, y is up, x is the head's left.
- canonical frame: the head frame with the expression undone as well (jaw drop, smile, brow raise and
  eye gaze). Every surface point of the animated head maps to a fixed canonical point, except on the
  parts that only exist in some expressions (the mouth interior and the closing eyelids), whose
  canonical point is simply their location after the same mapping.

The expression is defined by its inverse (deformed -> canonical); the deformed SDF is the canonical SDF
evaluated at the mapped point, so the canonical point of a hit is exact by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from avatarstudio_ns.data import labels as L
from avatarstudio_ns.data.synth.attributes import DEFAULT_ATTRIBUTES, HeadAttributes
from avatarstudio_ns.data.synth.performance import HeadState
from avatarstudio_ns.data.synth.sdf import ellipsoid, smax, smin, smoothstep, sphere, vertical_capsule

MOUTH_Y = -0.052
"""Height of the closed mouth line in the canonical frame."""
JAW_DROP = 0.016
"""Jaw drop at jaw_open = 1, metres."""
EYE_CENTER = (0.031, 0.012, 0.062)
"""Right-eye centre (x mirrored for the left), canonical frame before head-shape scaling."""
EYE_RADIUS = 0.0125
IRIS_COS = math.cos(0.52)
PUPIL_COS = math.cos(0.2)
BOUNDS = (((0.0, 0.0, 0.0), (0.1, 0.125, 0.125)), ((0.0, -0.1, -0.03), (0.11, 0.11, 0.12)))
"""Two ellipsoids (centre, radii) in the head frame whose union contains the head at unit scale
(the head, and the neck with long hair); rays that miss both are not traced."""

SCLERA_ALBEDO = (0.93, 0.92, 0.88)
PUPIL_ALBEDO = (0.02, 0.02, 0.025)
MOUTH_ALBEDO = (0.38, 0.08, 0.09)
TEETH_ALBEDO = (0.92, 0.9, 0.84)


@dataclass
class SurfaceSample:
    """What the renderer needs at ray hits."""

    labels: Int[Tensor, "*bs"]
    """Semantic label ids (avatarstudio_ns.data.labels)."""
    albedo: Float[Tensor, "*bs 3"]
    """Base colour in [0, 1]."""
    canonical: Float[Tensor, "*bs 3"]
    """Hit points in the canonical frame, metres."""
    shininess: Float[Tensor, "*bs"]
    """Specular strength (wet eyes and lips shine more than hair)."""


class SynthHead:
    """An identity of the synthetic head world; evaluates the animated head's SDF and surface."""

    def __init__(self, attributes: HeadAttributes = DEFAULT_ATTRIBUTES) -> None:
        self.attributes = attributes
        self.scale = (attributes.head_width, attributes.head_height, attributes.head_depth)
        self.hair_style = attributes.hair_style
        self.albedo = torch.tensor(
            np.stack(
                [
                    np.zeros(3),  # background (unused)
                    attributes.skin_albedo(),
                    attributes.hair_albedo(),
                    attributes.brow_albedo(),
                    np.array(SCLERA_ALBEDO),
                    attributes.eye_albedo(),
                    np.array(PUPIL_ALBEDO),
                    attributes.lip_albedo(),
                    np.array(MOUTH_ALBEDO),
                    attributes.skin_albedo() * 0.96,  # ears
                    attributes.skin_albedo() * 0.94,  # neck, slightly in shadow of the jaw
                ]
            ),
            dtype=torch.float32,
        )

    def bounds(self) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
        """Bounding ellipsoids (centre, radii) of this head in the head frame, for ray culling."""
        s = max(1.0, *self.scale)
        return tuple((tuple(c * s for c in center), tuple(r * s for r in radii)) for center, radii in BOUNDS)

    # ------------------------------------------------------------------ deformation
    def to_canonical(
        self, x: Tensor, y: Tensor, z: Tensor, state: HeadState
    ) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
        """Map head-frame points to the canonical frame.

        Returns:
            The canonical point, and the point with only the smile undone (where the mouth cavity,
            which follows the lip corners but lives in the opened mouth, is evaluated).
        """
        # Smile: lip corners rise and the mouth widens; falls off away from the mouth.
        if state.smile > 1e-4:
            g = torch.exp(-((x / 0.04) ** 2) - ((y - MOUTH_Y) / 0.022) ** 2 - ((z - 0.085) / 0.035) ** 2)
            s = state.smile * g
            xs = x / (1.0 + 0.12 * s)
            ys = y - s * 0.0065 * (xs / 0.022) ** 2
        else:
            xs, ys = x, y
        xc, yc, zc = xs, ys, z
        # Jaw: everything below the mouth line in the lower face moves down (and a little back) by
        # up to JAW_DROP; the band it opens collapses onto the mouth line and is carved as the cavity.
        drop_max = JAW_DROP * state.jaw_open
        if drop_max > 1e-6:
            weight = smoothstep(-0.02, 0.03, z) * smoothstep(0.07, 0.04, xs.abs()) * smoothstep(-0.135, -0.095, ys)
            drop = (MOUTH_Y - ys).clamp(0.0, drop_max) * weight
            yc = ys + drop
            zc = z + 0.3 * drop
        # Brow raise lifts the forehead skin above the eyes.
        if state.brow_raise > 1e-4:
            yc = yc - state.brow_raise * 0.004 * smoothstep(0.018, 0.03, yc) * smoothstep(0.03, 0.06, zc)
        return (xc, yc, zc), (xs, ys, z)

    # ------------------------------------------------------------------ geometry
    def _parts(self, x: Tensor, y: Tensor, z: Tensor, state: HeadState) -> dict[str, Tensor]:
        """Distances of every part group, evaluated at head-frame points."""
        (xc, yc, zc), (xs, ys, zs) = self.to_canonical(x, y, z, state)
        sw, sh, sd = self.scale
        ks = min(self.scale)  # distances in scaled coordinates shrink by at most this factor
        X, Y, Z = xc / sw, yc / sh, zc / sd
        AX = X.abs()  # left/right parts are mirrored

        # Skull, lower face and chin blend into one skin surface.
        skin = smin(
            ellipsoid(X, Y, Z, (0.0, 0.015, -0.005), (0.074, 0.088, 0.094)),
            ellipsoid(X, Y, Z, (0.0, -0.035, 0.018), (0.058, 0.066, 0.07)),
            0.025,
        )
        skin = smin(skin, ellipsoid(X, Y, Z, (0.0, -0.086, 0.052), (0.026, 0.02, 0.024)), 0.015)
        cheeks = ellipsoid(AX, Y, Z, (0.036, -0.02, 0.06), (0.024, 0.022, 0.022))
        skin = smin(skin, cheeks, 0.01)
        nose = smin(
            ellipsoid(X, Y, Z, (0.0, -0.008, 0.088), (0.0095, 0.024, 0.014)),
            sphere(X, Y, Z, (0.0, -0.027, 0.098), 0.0105),
            0.008,
        )
        skin = smin(skin, nose, 0.008)
        # Eye sockets are carved so that the eyeballs show; lids cover them from above and below.
        skin = smax(skin, -ellipsoid(AX, Y, Z, (EYE_CENTER[0], EYE_CENTER[1], 0.071), (0.019, 0.0115, 0.013)), 0.004)
        ex, ey, ez = AX - EYE_CENTER[0], Y - EYE_CENTER[1], Z - EYE_CENTER[2]
        lid_ball = torch.sqrt(ex * ex + ey * ey + ez * ez) - (EYE_RADIUS + 0.0011)
        upper = EYE_RADIUS * (0.5 - 0.95 * state.blink)
        lower = EYE_RADIUS * (-0.62 + 0.15 * state.blink)
        lids = torch.minimum(torch.maximum(lid_ball, upper - ey), torch.maximum(lid_ball, ey - lower))
        skin = smin(skin, lids, 0.0015)
        ears = ellipsoid(AX, Y, Z, (0.077, 0.0, -0.008), (0.011, 0.028, 0.018))
        brows = ellipsoid(AX, Y, Z, (0.032, 0.035, 0.076), (0.019, 0.0035, 0.0065))
        lips = torch.minimum(
            ellipsoid(X, Y, Z, (0.0, MOUTH_Y + 0.0045, 0.083), (0.021, 0.0055, 0.009)),
            ellipsoid(X, Y, Z, (0.0, MOUTH_Y - 0.0055, 0.081), (0.019, 0.0065, 0.009)),
        )
        eyes = torch.sqrt(ex * ex + ey * ey + ez * ez) - EYE_RADIUS
        hair = self._hair(X, Y, Z, AX)
        # The neck does not follow the head shape; cut flat at the bottom of the bust.
        neck = vertical_capsule(xc, yc, zc, (0.0, -0.05, -0.012), (0.0, -0.22, -0.025), 0.047)
        neck = torch.maximum(neck, -0.165 - yc)
        parts = {
            "skin": skin * ks,
            "ears": ears * ks,
            "brows": brows * ks,
            "lips": lips * ks,
            "eyes": eyes * ks,
            "hair": hair * ks,
            "neck": neck,
        }
        if drop_max := JAW_DROP * state.jaw_open:
            half = 0.5 * drop_max
            width = 0.019 * (1.0 + 0.15 * state.smile)
            parts["cavity"] = ellipsoid(xs, ys, zs, (0.0, MOUTH_Y - half, 0.073), (width, half + 0.0008, 0.027))
        return parts

    def _hair(self, X: Tensor, Y: Tensor, Z: Tensor, AX: Tensor) -> Tensor:
        # Everything in front of the hairline (the face) is cut out of every style.
        face = torch.maximum(0.03 - Z, Y - 0.058)
        if self.hair_style == "short":
            hair = ellipsoid(X, Y, Z, (0.0, 0.02, -0.008), (0.081, 0.094, 0.101))
            # Above the ears, lower at the back of the head.
            hair = torch.maximum(hair, (-0.012 + 0.35 * Z) - Y)
            hair = torch.maximum(hair, -ellipsoid(AX, Y, Z, (0.077, 0.0, -0.008), (0.03, 0.04, 0.03)))
        else:
            hair = ellipsoid(X, Y, Z, (0.0, 0.012, -0.01), (0.087, 0.1, 0.104))
            bottom = -0.075 if self.hair_style == "bob" else -0.085
            hair = torch.maximum(hair, bottom - Y)
            if self.hair_style == "long":
                back = ellipsoid(X, Y, Z, (0.0, -0.07, -0.05), (0.083, 0.12, 0.055))
                hair = smin(hair, torch.maximum(back, -0.175 - Y), 0.02)
        return torch.maximum(hair, -face)

    def sdf(self, x: Tensor, y: Tensor, z: Tensor, state: HeadState) -> Tensor:
        """Signed distance (a lower bound near the surface) of the animated head at head-frame points."""
        parts = self._parts(x, y, z, state)
        return self._combine(parts)[0]

    @staticmethod
    def _combine(parts: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The head's SDF; also the solid before the eyes are added, with and without the mouth cut."""
        solid = smin(parts["skin"], parts["ears"], 0.004)
        solid = smin(solid, parts["brows"], 0.0015)
        solid = smin(solid, parts["lips"], 0.004)
        solid = smin(solid, parts["neck"], 0.02)
        solid = torch.minimum(solid, parts["hair"])
        uncut = solid
        if "cavity" in parts:
            solid = smax(solid, -parts["cavity"], 0.0015)
        return torch.minimum(solid, parts["eyes"]), uncut, solid

    # ------------------------------------------------------------------ surface attributes
    def surface(self, x: Tensor, y: Tensor, z: Tensor, state: HeadState) -> SurfaceSample:
        """Labels, albedo and canonical points at head-frame surface points."""
        parts = self._parts(x, y, z, state)
        _, uncut, cut = self._combine(parts)
        order = ["skin", "hair", "brows", "lips", "ears", "neck"]
        ids = torch.tensor([L.SKIN, L.HAIR, L.BROWS, L.LIPS, L.EARS, L.NECK])
        stacked = torch.stack([parts[k] for k in order], dim=-1)
        labels = ids[stacked.argmin(dim=-1)]
        if "cavity" in parts:
            labels = torch.where(-parts["cavity"] > uncut, torch.full_like(labels, L.MOUTH_INTERIOR), labels)
        on_eye = parts["eyes"] <= cut + 1e-5
        # Eyes: rotate the hit back by the gaze, then the iris/pupil sit around the canonical +z axis.
        (xc, yc, zc), (xs, ys, _) = self.to_canonical(x, y, z, state)
        sw, sh, sd = self.scale
        side = torch.where(xc >= 0, 1.0, -1.0)
        ex = xc / sw - side * EYE_CENTER[0]
        ey = yc / sh - EYE_CENTER[1]
        ez = zc / sd - EYE_CENTER[2]
        cy, sy = math.cos(state.gaze_yaw), math.sin(state.gaze_yaw)
        cp, sp = math.cos(state.gaze_pitch), math.sin(state.gaze_pitch)
        # Inverse gaze: undo yaw (about y) then pitch (about x).
        rx = cy * ex - sy * ez
        rz0 = sy * ex + cy * ez
        ry = cp * ey + sp * rz0
        rz = -sp * ey + cp * rz0
        cos_axis = rz / torch.sqrt(rx * rx + ry * ry + rz * rz).clamp_min(1e-9)
        eye_label = torch.where(
            cos_axis > PUPIL_COS,
            torch.full_like(labels, L.PUPIL),
            torch.where(cos_axis > IRIS_COS, torch.full_like(labels, L.IRIS), torch.full_like(labels, L.SCLERA)),
        )
        labels = torch.where(on_eye, eye_label, labels)
        canonical = torch.stack([xc, yc, zc], dim=-1)
        eye_canonical = torch.stack(
            [(side * EYE_CENTER[0] + rx) * sw, (EYE_CENTER[1] + ry) * sh, (EYE_CENTER[2] + rz) * sd], dim=-1
        )
        canonical = torch.where(on_eye[:, None], eye_canonical, canonical)

        albedo = self.albedo[labels].clone()
        # Procedural detail, all in canonical coordinates so it sticks to the surface over time.
        hair = labels == L.HAIR
        strands = 0.87 + 0.13 * torch.sin(torch.atan2(xc, zc) * 40.0 + 5.0 * torch.sin(yc * 45.0))
        albedo = torch.where(hair[:, None], albedo * strands[:, None], albedo)
        iris = labels == L.IRIS
        limbus = 1.0 - 0.5 * smoothstep(IRIS_COS + 0.04, IRIS_COS, cos_axis)
        albedo = torch.where(iris[:, None], albedo * limbus[:, None], albedo)
        skin = labels == L.SKIN
        blush = torch.exp(-(((xc.abs() - 0.042) / 0.018) ** 2) - ((yc + 0.025) / 0.018) ** 2) * (zc > 0.03)
        tint = torch.tensor([1.0, 0.86, 0.86])
        albedo = torch.where(skin[:, None], albedo * (1.0 - 0.35 * blush[:, None] * (1.0 - tint)), albedo)
        if "cavity" in parts:
            # Upper teeth show at the top front of the open mouth; the throat darkens further in.
            mouth = labels == L.MOUTH_INTERIOR
            teeth = (ys > MOUTH_Y - 0.0045) & (z > 0.074) & (xs.abs() < 0.015)
            depth_shade = 0.45 + 0.55 * smoothstep(0.05, 0.085, z)
            mouth_col = torch.where(
                teeth[:, None], torch.tensor(TEETH_ALBEDO), torch.tensor(MOUTH_ALBEDO) * depth_shade[:, None]
            )
            albedo = torch.where(mouth[:, None], mouth_col, albedo)
        shininess = torch.full_like(x, 0.08)
        shininess = torch.where(hair, torch.full_like(x, 0.04), shininess)
        shininess = torch.where(on_eye | (labels == L.LIPS), torch.full_like(x, 0.35), shininess)
        return SurfaceSample(labels=labels, albedo=albedo.clamp(0.0, 1.0), canonical=canonical, shininess=shininess)
