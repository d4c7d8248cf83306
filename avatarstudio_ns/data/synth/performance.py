"""The performance: expression and rigid head pose as smooth functions of normalised time.

Time t in [0, 1] (t = timestep_index / (num_frames - 1)). t = 0 is the neutral, frontal pose, so the
keyframe set's "all cameras at the first frame" sees the plain head. Over the clip the head speaks
(jaw), smiles, blinks, turns and nods; a seed varies amplitudes, speech rhythm and blink times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NECK_PIVOT = np.array([0.0, -0.15, -0.02], dtype=np.float64)
"""Head-frame point the rigid head motion rotates about (the base of the neck), metres."""


@dataclass(frozen=True)
class HeadState:
    """The head at one instant: expression in [0, 1] and rigid pose."""

    time: float
    """Normalised time in [0, 1]."""
    jaw_open: float = 0.0
    """Mouth opening, 0 closed, 1 wide open (about 16 mm of jaw drop)."""
    smile: float = 0.0
    """Lip-corner raise and widening."""
    blink: float = 0.0
    """Eyelid closure, 0 open, 1 shut."""
    brow_raise: float = 0.0
    """Brow lift."""
    gaze_yaw: float = 0.0
    """Eye rotation left/right, radians."""
    gaze_pitch: float = 0.0
    """Eye rotation up/down, radians."""
    yaw: float = 0.0
    """Head turn about the vertical axis, degrees (positive turns the face toward +x)."""
    pitch: float = 0.0
    """Nod, degrees (positive tilts the face down)."""
    roll: float = 0.0
    """Tilt toward a shoulder, degrees."""

    def rotation(self) -> np.ndarray:
        """Head-to-world rotation (3x3), yaw after pitch after roll."""
        return rotation_ypr(self.yaw, self.pitch, self.roll)

    def to_dict(self) -> dict:
        """Plain dict for synth.json, including the 4x4 head-to-world pose."""
        pose = np.eye(4)
        rot = self.rotation()
        pose[:3, :3] = rot
        pose[:3, 3] = NECK_PIVOT - rot @ NECK_PIVOT
        return {
            "time": round(self.time, 6),
            "jaw_open": round(self.jaw_open, 5),
            "smile": round(self.smile, 5),
            "blink": round(self.blink, 5),
            "brow_raise": round(self.brow_raise, 5),
            "gaze_yaw": round(self.gaze_yaw, 5),
            "gaze_pitch": round(self.gaze_pitch, 5),
            "yaw_deg": round(self.yaw, 4),
            "pitch_deg": round(self.pitch, 4),
            "roll_deg": round(self.roll, 4),
            "expressiveness": round(self.expressiveness(), 5),
            "head_to_world": [[round(float(v), 7) for v in row] for row in pose],
        }

    def expressiveness(self) -> float:
        """How far the face is from neutral (expression only, not pose); ranks expressive frames."""
        return float(self.jaw_open + self.smile + self.blink + 0.5 * self.brow_raise)


def rotation_ypr(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation matrix R = R_y(yaw) @ R_x(pitch) @ R_z(roll), angles in degrees."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _smoothstep(a: float, b: float, x: float) -> float:
    s = min(max((x - a) / (b - a), 0.0), 1.0)
    return s * s * (3 - 2 * s)


@dataclass(frozen=True)
class Performance:
    """A seeded performance; call state(t) for the head at normalised time t."""

    seed: int = 0
    """Varies amplitudes, rhythm and blink times; seed 0 is the reference performance."""
    yaw_amplitude: float = 25.0
    """Largest head turn, degrees."""
    pitch_amplitude: float = 10.0
    """Largest nod, degrees."""

    def _params(self) -> dict:
        rng = np.random.default_rng(self.seed + 7919)
        if self.seed == 0:
            return {"syll": 6.5, "phase": 0.0, "blinks": (0.27, 0.58, 0.88), "yaw": 1.0, "pitch": 1.0, "smile": 0.72}
        return {
            "syll": float(rng.uniform(5.0, 8.0)),
            "phase": float(rng.uniform(0, 2 * math.pi)),
            "blinks": tuple(sorted(float(b) for b in rng.uniform(0.15, 0.95, size=3))),
            "yaw": float(rng.uniform(0.7, 1.0)) * float(rng.choice([-1.0, 1.0])),
            "pitch": float(rng.uniform(0.6, 1.0)),
            "smile": float(rng.uniform(0.55, 0.85)),
        }

    def state(self, t: float) -> HeadState:
        """The head at normalised time t in [0, 1]."""
        p = self._params()
        t = float(t)
        # Two speech segments; syllables are a rectified oscillation inside them.
        envelope = _smoothstep(0.04, 0.12, t) * (1 - _smoothstep(0.42, 0.5, t)) + _smoothstep(0.6, 0.68, t) * (
            1 - _smoothstep(0.92, 0.99, t)
        )
        syllables = 0.5 - 0.5 * math.cos(2 * math.pi * p["syll"] * t + p["phase"])
        jaw = envelope * (0.25 + 0.75 * syllables)
        smile = math.exp(-(((t - p["smile"]) / 0.14) ** 2)) * _smoothstep(0.0, 0.1, t)
        blink = max(math.exp(-(((t - b) / 0.018) ** 2)) for b in p["blinks"])
        brow = 0.6 * math.exp(-(((t - 0.35) / 0.08) ** 2))
        # Pose: zero at t = 0, then a slow turn one way and back past centre, with faster nods.
        yaw = self.yaw_amplitude * p["yaw"] * math.sin(1.5 * math.pi * t)
        pitch = self.pitch_amplitude * p["pitch"] * math.sin(3.0 * math.pi * t) * _smoothstep(0.0, 0.15, t)
        roll = 4.0 * math.sin(2.0 * math.pi * t)
        gaze_yaw = 0.15 * math.sin(2.5 * math.pi * t)
        gaze_pitch = 0.05 * math.sin(4.0 * math.pi * t)
        return HeadState(
            time=t,
            jaw_open=jaw,
            smile=smile,
            blink=blink,
            brow_raise=brow,
            gaze_yaw=gaze_yaw,
            gaze_pitch=gaze_pitch,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
        )

    def states(self, num_frames: int) -> list[HeadState]:
        """The states at timesteps 0..num_frames-1, evenly spread over [0, 1]."""
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1.")
        return [self.state(i / max(num_frames - 1, 1)) for i in range(num_frames)]
