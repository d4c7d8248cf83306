"""``avatarstudio video``: original | edited, side by side, from a moving camera while time runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from avatarstudio_ns.data.frontal import frontal_image_index
from avatarstudio_ns.eval.renders import orbit_path, render_rgb, side_by_side, write_video

CONSOLE = Console()


@dataclass
class VideoCommand:
    """Render the original and the edited avatar side by side, the way the paper shows its results."""

    original: Path
    """config.yml of the original avatar (an ``avatarstudio-recon`` run)."""
    edited: Path
    """config.yml of the edited avatar (an ``avatarstudio-edit`` run)."""
    output: Path = Path("side_by_side.mp4")
    """Video to write (.mp4, or .gif)."""
    seconds: float = 4.0
    """Length of the video; time runs from the first to the last frame of the performance."""
    fps: int = 12
    """Frames per second."""
    resolution: int = 256
    """Longer side of each half, in pixels."""
    camera: Optional[int] = None
    """Train image index whose camera the swing starts from; default: the frontal camera at frame 0."""
    max_angle: float = 40.0
    """Amplitude of the camera swing, in degrees."""

    def main(self) -> None:
        """Loads both avatars (no diffusion model is loaded) and writes the video."""
        # heavy (eval_utils imports every method config of nerfstudio's registry, ~3 s): imported when the command
        # runs, so --help stays fast
        from nerfstudio.utils.eval_utils import eval_setup

        _, original, _, _ = eval_setup(self.original, test_mode="inference")
        _, edited, _, _ = eval_setup(self.edited, test_mode="inference")
        cameras = original.datamanager.train_dataset.cameras
        start = self.camera if self.camera is not None else frontal_image_index(original.datamanager.train_dataset)
        path = orbit_path(cameras, start, max(2, round(self.seconds * self.fps)), self.max_angle, self.resolution)
        with CONSOLE.status("Rendering the original avatar..."):
            left = render_rgb(original.model, path)
        with CONSOLE.status("Rendering the edited avatar..."):
            right = render_rgb(edited.model, path)
        write_video(self.output, side_by_side(left, right), fps=self.fps)
        CONSOLE.print(f"Wrote {self.output}")
