"""Writing a synthetic capture in the multi-view video export format (docs/data_format.md).

Layout under the output folder:

    images/{timestep:05d}_{camera:02d}.png       RGB composited on the backdrop
    fg_masks/{timestep:05d}_{camera:02d}.png     8-bit foreground coverage (255 = head)
    semantics/{timestep:05d}_{camera:02d}.png    8-bit label ids (avatarstudio_ns.data.labels)
    canonical/{timestep:05d}_{camera:02d}.png    16-bit canonical points (see canonical.py)
    synth.json                                   attributes, caption, label table, performance, rig
    transforms_{train,val,test}.json             written last, atomically

Old transforms and synth.json are removed before anything is rendered and written only at the end, so a
folder with transforms_train.json always holds a complete capture. Every file is written under a temporary name and
renamed, so a killed render leaves no half-written image where a viewer or a rerun would take it for a whole one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avatarstudio_ns.atomic import atomic_write_text
from avatarstudio_ns.data.labels import LABELS
from avatarstudio_ns.data.synth.attributes import DEFAULT_ATTRIBUTES, HeadAttributes, caption, sample_attributes
from avatarstudio_ns.data.synth.canonical import CANONICAL_BOX, save_canonical_points, write_png
from avatarstudio_ns.data.synth.head import SynthHead
from avatarstudio_ns.data.synth.performance import Performance
from avatarstudio_ns.data.synth.render import RenderSettings, render_frame
from avatarstudio_ns.data.synth.rig import Rig, make_rig
from avatarstudio_ns.threads import worker_pool

DEFAULT_HOLDOUT_CAMERA = 8
"""The usual held-out camera of the multi-view export."""


@dataclass
class CaptureConfig:
    """What to render: identity, performance, rig and output."""

    output: Path = Path("data/synth_head")
    """Folder the capture is written to (created; an old capture there is replaced)."""
    num_cameras: int = 24
    """Cameras on the ring around the head (at least 2). Camera num_cameras // 2 is frontal."""
    num_frames: int = 60
    """Timesteps of the performance."""
    resolution: int = 256
    """Image size in pixels: the side of a square image, or the width and height that --width / --height do not
    set."""
    width: int | None = None
    """Image width in pixels (a non-square capture, e.g. 802 x 550 as NeRSemble's); None: --resolution."""
    height: int | None = None
    """Image height in pixels; None: --resolution. The head fills the shorter side as it fills a square image."""
    seed: int = 0
    """Seed of the performance and, with --random-identity, of the identity."""
    random_identity: bool = False
    """Draw the identity at random from the seed instead of the default identity."""
    hair_color: str | None = None
    """Override the hair colour (black, brown, blonde, red, blue, green, pink, purple, white, grey)."""
    skin_tone: str | None = None
    """Override the skin tone (pale, light, medium, tan, brown, dark)."""
    eye_color: str | None = None
    """Override the iris colour (brown, blue, green, hazel, grey)."""
    lip_color: str | None = None
    """Override the lip colour (natural, red, pink, purple, black)."""
    brow_color: str | None = None
    """Override the brow colour (a hair colour, or "match" to follow the hair)."""
    hair_style: str | None = None
    """Override the hair style (short, bob, long)."""
    holdout_camera: int | None = None
    """Camera held out of training for transforms_val.json and transforms_test.json (both hold it at
    every timestep). Default: camera 8 if the rig has it, else the last camera."""
    test_frames: int = 0
    """The last this many frames are left out of training and make up transforms_test.json at every camera, as
    VHAP's exports divide a sequence (its test split is the last ~30 % of the timesteps, which training never sees);
    0: the test split is the held-out camera at every frame, like val."""
    supersample: int = 2
    """Sub-pixel grid per axis traced at edge pixels for antialiasing (1 = off)."""
    workers: int = 0
    """Processes rendering timesteps in parallel; 0 = automatic (one per CPU core, at most 2, and just
    this process for small captures, where starting workers costs more than it saves)."""
    progress: bool = True
    """Show a progress bar."""

    def attributes(self) -> HeadAttributes:
        """The identity: default or seeded random, with the overrides applied."""
        base = sample_attributes(self.seed) if self.random_identity else DEFAULT_ATTRIBUTES
        return base.replace(
            hair_color=self.hair_color,
            skin_tone=self.skin_tone,
            eye_color=self.eye_color,
            lip_color=self.lip_color,
            brow_color=self.brow_color,
            hair_style=self.hair_style,
        )

    def holdout(self) -> int:
        """The held-out camera index."""
        if self.holdout_camera is not None:
            if not 0 <= self.holdout_camera < self.num_cameras:
                raise ValueError(f"holdout camera {self.holdout_camera} is not in the rig (0..{self.num_cameras - 1}).")
            return self.holdout_camera
        return DEFAULT_HOLDOUT_CAMERA if DEFAULT_HOLDOUT_CAMERA < self.num_cameras else self.num_cameras - 1

    def image_size(self) -> tuple[int, int]:
        """Width and height of the images, pixels."""
        return self.width or self.resolution, self.height or self.resolution

    def rig(self) -> Rig:
        """The camera rig."""
        width, height = self.image_size()
        return make_rig(self.num_cameras, self.resolution, width=width, height=height)


def _name(timestep: int, camera: int) -> str:
    return f"{timestep:05d}_{camera:02d}.png"


def _render_timestep(config: CaptureConfig, attributes: HeadAttributes, timestep: int) -> int:
    """Render all cameras at one timestep and write their files (runs in a worker process)."""
    rig = config.rig()
    state = Performance(seed=config.seed).states(config.num_frames)[timestep]
    views = render_frame(SynthHead(attributes), rig, state, RenderSettings(supersample=config.supersample))
    rgb = (views.rgb.numpy() * 255.0 + 0.5).astype(np.uint8)
    mask = (views.mask.numpy() * 255.0 + 0.5).astype(np.uint8)
    labels = views.labels.numpy()
    canonical = views.canonical.numpy()
    out = config.output
    for cam in range(rig.num_cameras):
        name = _name(timestep, cam)
        # write_png takes OpenCV's BGR order (OpenCV is the writer that keeps the canonical PNGs' 16 bits).
        write_png(out / "images" / name, rgb[cam][..., ::-1])
        write_png(out / "fg_masks" / name, mask[cam])
        write_png(out / "semantics" / name, labels[cam])
        save_canonical_points(out / "canonical" / name, canonical[cam])
    return timestep


def _transforms(config: CaptureConfig, rig: Rig, cameras: list[int], timesteps: list[int]) -> dict:
    frames = []
    for t in timesteps:
        for cam in cameras:
            name = _name(t, cam)
            frames.append(
                {
                    "file_path": f"images/{name}",
                    "transform_matrix": [[round(float(v), 8) for v in row] for row in rig.camera_to_world[cam]],
                    "timestep_index": t,
                    "camera_index": cam,
                    "fg_mask_path": f"fg_masks/{name}",
                    "semantic_path": f"semantics/{name}",
                    "canonical_path": f"canonical/{name}",
                }
            )
    return {
        "fl_x": rig.fx,
        "fl_y": rig.fy,
        "cx": rig.cx,
        "cy": rig.cy,
        "w": rig.width,
        "h": rig.height,
        "camera_angle_x": 2.0 * float(np.arctan(rig.width / (2.0 * rig.fx))),
        "timestep_indices": timesteps,
        "camera_indices": cameras,
        "frontal_camera_index": rig.frontal_camera_index,
        "background_color": [1.0, 1.0, 1.0],
        "frames": frames,
    }


def render_capture(config: CaptureConfig) -> Path:
    """Render a whole capture and write it in the export format; returns the output folder."""
    if config.num_cameras < 2:
        raise ValueError("A capture needs at least 2 cameras (one is held out for val/test).")
    width, height = config.image_size()
    if config.num_frames < 1 or min(width, height) < 8:
        raise ValueError("A capture needs at least 1 frame and images of at least 8 pixels on each side.")
    if not 0 <= config.test_frames < config.num_frames:
        raise ValueError(
            f"--test-frames {config.test_frames} leaves no frame to train on: it must be at least 0 and below "
            f"--num-frames ({config.num_frames})."
        )
    attributes = config.attributes()
    holdout = config.holdout()
    rig = config.rig()
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("transforms_train.json", "transforms_val.json", "transforms_test.json", "synth.json"):
        (out / old).unlink(missing_ok=True)
    for sub in ("images", "fg_masks", "semantics", "canonical"):
        (out / sub).mkdir(exist_ok=True)

    pixels = config.num_cameras * config.num_frames * width * height
    workers = config.workers or (min(2, os.cpu_count() or 1) if pixels > 4_000_000 else 1)
    workers = max(1, min(workers, config.num_frames))
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not config.progress) as progress:
        task = progress.add_task("timesteps", total=config.num_frames)
        if workers == 1:
            for t in range(config.num_frames):
                _render_timestep(config, attributes, t)
                progress.advance(task)
        else:
            with worker_pool(workers) as pool:
                jobs = [pool.submit(_render_timestep, config, attributes, t) for t in range(config.num_frames)]
                for job in jobs:
                    job.result()
                    progress.advance(task)

    performance = Performance(seed=config.seed)
    synth = {
        "format_version": 1,
        "generator": "avatarstudio synth",
        "seed": config.seed,
        "attributes": attributes.to_dict(),
        "caption": caption(attributes, ("hair", "skin", "eyes", "lips")),
        "labels": LABELS,
        "num_cameras": config.num_cameras,
        "num_frames": config.num_frames,
        "resolution": config.resolution,
        "width": width,
        "height": height,
        "supersample": config.supersample,
        "frontal_camera_index": rig.frontal_camera_index,
        "holdout_camera_index": holdout,
        "test_frames": config.test_frames,
        "background_color": [1.0, 1.0, 1.0],
        "canonical_encoding": {
            "format": "16-bit RGB PNG, R=x G=y B=z, metres in the canonical head frame",
            "box": [-CANONICAL_BOX, CANONICAL_BOX],
            "decode": "coord = (value - 1) / 65534 * 2 * box - box; value 0 in all channels = background",
        },
        "performance": [
            {"timestep_index": i, **state.to_dict()} for i, state in enumerate(performance.states(config.num_frames))
        ],
    }
    train_cameras = [c for c in range(config.num_cameras) if c != holdout]
    trained = list(range(config.num_frames - config.test_frames))
    if config.test_frames:
        test = _transforms(config, rig, list(range(config.num_cameras)), list(range(len(trained), config.num_frames)))
    else:
        test = _transforms(config, rig, [holdout], trained)
    atomic_write_text(out / "synth.json", json.dumps(synth, indent=1))
    atomic_write_text(out / "transforms_val.json", json.dumps(_transforms(config, rig, [holdout], trained), indent=1))
    atomic_write_text(out / "transforms_test.json", json.dumps(test, indent=1))
    # Last: its presence marks a complete capture.
    transforms_train = _transforms(config, rig, train_cameras, trained)
    atomic_write_text(out / "transforms_train.json", json.dumps(transforms_train, indent=1))
    return out
