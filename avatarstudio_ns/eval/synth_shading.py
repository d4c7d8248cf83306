"""The synth at the evaluated views of a synthetic capture, rendered again from its ``synth.json``: its shading, and
the exact edit (the same head with a part recoloured).

A rendered pixel mixes albedo and light: in shadow, white hair shows the colour of lit grey hair and dark skin that
of lit brown skin, so a colour named from the pixel alone is ambiguous. The synth knows the light at every pixel;
the capture does not store it, but ``synth.json`` records all that made the capture (identity, performance seed,
rig), so the evaluation renders the pixel centres of its views again and reads the grey shading factor and the
highlight there (:class:`~avatarstudio_ns.data.synth.render.ShadedRays`). A capture not made by the synth, or made by
a synth whose geometry has changed since (its labels are not reproduced), has no shading and is measured as before.

The same head with a part in another albedo is what a perfect edit of that part would show; the flicker it scores is
the floor of the flicker measure (``exact_recolour_flicker`` in eval/evaluate.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, UInt8
from rich.console import Console

from avatarstudio_ns.data.synth.attributes import HeadAttributes
from avatarstudio_ns.data.synth.capture import CaptureConfig
from avatarstudio_ns.data.synth.head import SynthHead
from avatarstudio_ns.data.synth.performance import Performance
from avatarstudio_ns.data.synth.render import RenderSettings, render_frame

CONSOLE = Console()

MIN_LABEL_AGREEMENT = 0.99
"""Share of pixels whose label the new render must reproduce for its shading to be used."""


@dataclass
class _SynthScene:
    """What made a synth capture, read back from its ``synth.json``."""

    config: CaptureConfig
    attributes: HeadAttributes

    def render(
        self,
        head: SynthHead,
        camera_indices: Sequence[int],
        timestep_indices: Sequence[int],
        settings: RenderSettings,
    ) -> dict[str, np.ndarray]:
        """``head`` rendered at each (camera, timestep) view: rgb, labels, shading and specular, stacked per view."""
        rig = self.config.rig()
        states = Performance(seed=self.config.seed).states(self.config.num_frames)
        steps, cameras = np.asarray(timestep_indices), np.asarray(camera_indices)
        out: dict[str, np.ndarray] = {}
        for step in np.unique(steps):
            at_step = np.flatnonzero(steps == step)
            # Only the cameras evaluated at this frame.
            subset = dataclasses.replace(rig, camera_to_world=rig.camera_to_world[cameras[at_step]])
            views = render_frame(head, subset, states[int(step)], settings)
            for name in ("rgb", "labels", "shading", "specular"):
                value = getattr(views, name).numpy()
                if name not in out:
                    out[name] = np.zeros((len(steps), *value.shape[1:]), dtype=value.dtype)
                out[name][at_step] = value
        return out


def _synth_scene(capture: Path) -> _SynthScene | None:
    """The capture's synth settings, or None when it was not made by the synth."""
    record = capture / "synth.json"
    if not record.is_file():
        return None
    synth = json.loads(record.read_text())
    # The capture's own settings make the rig and the performance, as when it was rendered.
    config = CaptureConfig(
        num_cameras=int(synth["num_cameras"]),
        num_frames=int(synth["num_frames"]),
        resolution=int(synth["resolution"]),
        width=synth.get("width"),
        height=synth.get("height"),
        seed=int(synth["seed"]),
        supersample=int(synth.get("supersample", CaptureConfig.supersample)),  # not recorded before 2026-12-05
    )
    return _SynthScene(config, HeadAttributes(**synth["attributes"]))


def capture_shading(
    capture: Path,
    camera_indices: Sequence[int],
    timestep_indices: Sequence[int],
    labels: UInt8[np.ndarray, "num_images H W"],
) -> tuple[Float[np.ndarray, "num_images H W"], Float[np.ndarray, "num_images H W"]] | None:
    """Shading factor and highlight of the synth at each (camera, timestep) view of a capture.

    Args:
        capture: The capture folder (holding ``synth.json``).
        camera_indices: Rig camera of each view.
        timestep_indices: Performance frame of each view.
        labels: The capture's labels of each view, which the new render must reproduce.

    Returns:
        (shading, specular), each (num_images, H, W) at the capture's resolution; None when the capture has no
        ``synth.json`` or the render does not reproduce its labels.
    """
    scene = _synth_scene(capture)
    if scene is None:
        return None
    # Only pixel centres: the shading is read where labels are.
    views = scene.render(SynthHead(scene.attributes), camera_indices, timestep_indices, RenderSettings(supersample=1))
    agreement = float(np.mean(views["labels"] == labels))
    if agreement < MIN_LABEL_AGREEMENT:
        CONSOLE.print(
            f"[yellow]{capture / 'synth.json'}: the synth renders {agreement:.1%} of the capture's labels again (below "
            f"{MIN_LABEL_AGREEMENT:.0%}; it has changed since the capture was made), so colours are measured without "
            "its shading. Render the capture again (avatarstudio synth) to measure them with it."
        )
        return None
    return views["shading"], views["specular"]


def recoloured_capture(
    capture: Path,
    camera_indices: Sequence[int],
    timestep_indices: Sequence[int],
    label_ids: Sequence[int],
    rgb: Sequence[float],
) -> Float[np.ndarray, "num_images H W 3"] | None:
    """The capture's views rendered again with the parts ``label_ids`` in the albedo ``rgb``: the exact edit.

    The parts keep their texture detail and light (a part's detail multiplies its albedo), and edge pixels are
    antialiased as in the capture, so this is what the same head with that colour would have been captured as.

    Returns:
        RGB in [0, 1] at the capture's resolution, per view; None when the capture was not made by the synth.
    """
    scene = _synth_scene(capture)
    if scene is None:
        return None
    head = SynthHead(scene.attributes)
    head.albedo[list(label_ids)] = torch.as_tensor(rgb, dtype=head.albedo.dtype)
    settings = RenderSettings(supersample=scene.config.supersample)
    return scene.render(head, camera_indices, timestep_indices, settings)["rgb"]
