"""``avatarstudio synth``: render the synthetic head world as a multi-view video capture."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from avatarstudio_ns.data.synth.capture import CaptureConfig, render_capture


@dataclass
class SynthCommand(CaptureConfig):
    """Render a procedural, animated head from a ring of cameras into the multi-view export format
    (transforms_{train,val,test}.json, images, masks, semantic labels, canonical points, synth.json)."""

    def main(self) -> None:
        """Render and write the capture."""
        console = Console()
        attributes = self.attributes()
        width, height = self.image_size()
        console.print(
            f"Rendering {self.num_cameras} cameras x {self.num_frames} frames at {width}x{height}px of a head with "
            f"{attributes.hair_style} {attributes.hair_color} hair, {attributes.skin_tone} skin and "
            f"{attributes.eye_color} eyes into {self.output}"
        )
        out = render_capture(self)
        console.print(f"[green]Wrote {out}[/green] (held-out camera {self.holdout()}).")
