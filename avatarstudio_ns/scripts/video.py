"""``avatarstudio video``: original | edited, side by side, from a moving camera while time runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

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
        from nerfstudio.utils.eval_utils import eval_setup

        from avatarstudio_ns.eval.renders import orbit_path, render_rgb, side_by_side, write_video

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


def frontal_image_index(dataset) -> int:
    """Index of the frontal camera's first image in ``dataset`` (the first image if none is marked)."""
    import torch

    metadata = dataset.metadata
    frontal = metadata.get("frontal_camera_index")
    if frontal is None or "camera_indices" not in metadata:
        return 0
    hits = torch.nonzero(metadata["camera_indices"] == frontal).flatten()
    if len(hits) == 0:
        return 0
    first = hits[torch.argmin(metadata["timestep_indices"][hits])]
    return int(first)
