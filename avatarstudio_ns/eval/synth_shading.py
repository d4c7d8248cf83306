"""The synth's shading at the evaluated views of a synthetic capture, rendered again from its ``synth.json``.

A rendered pixel mixes albedo and light: in shadow, white hair shows the colour of lit grey hair and dark skin that
of lit brown skin, so a colour named from the pixel alone is ambiguous. The synth knows the light at every pixel;
the capture does not store it, but ``synth.json`` records all that made the capture (identity, performance seed,
rig), so the evaluation renders the pixel centres of its views again and reads the grey shading factor and the
highlight there (:class:`~avatarstudio_ns.data.synth.render.ShadedRays`). A capture not made by the synth, or made by
a synth whose geometry has changed since (its labels are not reproduced), has no shading and is measured as before.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    )
    rig = config.rig()
    states = Performance(seed=config.seed).states(config.num_frames)
    head = SynthHead(HeadAttributes(**synth["attributes"]))
    shading = np.zeros(labels.shape, dtype=np.float32)
    specular = np.zeros(labels.shape, dtype=np.float32)
    rendered_labels = np.zeros_like(labels)
    steps = np.asarray(timestep_indices)
    cameras = np.asarray(camera_indices)
    for step in np.unique(steps):
        at_step = np.flatnonzero(steps == step)
        # Only the cameras evaluated at this frame, and only pixel centres: the shading is read where labels are.
        subset = dataclasses.replace(rig, camera_to_world=rig.camera_to_world[cameras[at_step]])
        views = render_frame(head, subset, states[int(step)], RenderSettings(supersample=1))
        shading[at_step] = views.shading.numpy()
        specular[at_step] = views.specular.numpy()
        rendered_labels[at_step] = views.labels.numpy()
    agreement = float(np.mean(rendered_labels == labels))
    if agreement < MIN_LABEL_AGREEMENT:
        CONSOLE.print(
            f"[yellow]{record}: the synth renders {agreement:.1%} of the capture's labels again (below "
            f"{MIN_LABEL_AGREEMENT:.0%}; it has changed since the capture was made), so colours are measured without "
            "its shading. Render the capture again (avatarstudio synth) to measure them with it."
        )
        return None
    return shading, specular
