"""The edit's datamanager: whole keyframe images (camera, time) instead of random rays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from avatarstudio_ns.data.dataset import AvatarDataset
from avatarstudio_ns.data.keyframes import Keyframe, keyframe_image_index, keyframe_images


@dataclass
class KeyframeDataManagerConfig(VanillaDataManagerConfig):
    """Samples one keyframe per step and yields all rays of its image at the render resolution."""

    _target: Type = field(default_factory=lambda: KeyframeDataManager)
    """target class to instantiate"""
    render_resolution: int = 256
    """Longer side, in pixels, of the keyframe renders that the guidance sees (paper: 256). Images are never
    rendered above their captured size."""
    seed: int = 0
    """Seed of the keyframe order."""


class KeyframeDataManager(VanillaDataManager[AvatarDataset]):
    """Yields the rays of one whole keyframe image per step; evaluation is nerfstudio's, unchanged.

    The keyframes are set once the avatar's per-frame codes are known (they are chosen from them), see
    :meth:`set_keyframes`. Training batches carry ``keyframe_index`` (position in the keyframe list),
    ``image_height`` / ``image_width`` so the pipeline can reshape the rendered rays into an image, and ``image``:
    the captured keyframe at the render resolution, one row per ray.
    """

    config: KeyframeDataManagerConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keyframe_image_indices: List[int] = []
        self.keyframes: List[Keyframe] = []
        self._captured: Dict[int, torch.Tensor] = {}
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._order: List[int] = []

    def setup_train(self) -> None:
        # Keyframe images are read on demand: no pixel sampler or image cache is needed for training.
        pass

    def set_keyframes(self, keyframes: Sequence[Keyframe]) -> None:
        """Sets the keyframes (images of the train split)."""
        if not keyframes:
            raise ValueError("the edit needs at least one keyframe")
        self.keyframe_image_indices = [keyframe_image_index(self.train_dataset, k) for k in keyframes]
        self.keyframes = list(keyframes)
        self._captured = {}
        self._order = []

    def keyframe_camera(self, keyframe_index: int) -> Cameras:
        """The keyframe's camera, rescaled to the render resolution."""
        index = self.keyframe_image_indices[keyframe_index]
        camera = self.train_dataset.cameras[index : index + 1].to(self.device)
        longer = max(int(camera.width[0, 0]), int(camera.height[0, 0]))
        scale = min(1.0, self.config.render_resolution / longer)
        if scale < 1.0:
            camera.rescale_output_resolution(scale)
        return camera

    def captured_image(self, keyframe_index: int, height: int, width: int) -> torch.Tensor:
        """The captured keyframe image (masked onto the backdrop) resized to height x width, as [h * w, 3] rows."""
        if keyframe_index not in self._captured:
            image = keyframe_images(self.train_dataset, [self.keyframes[keyframe_index]])[0]
            if tuple(image.shape[1:]) != (height, width):
                image = F.interpolate(image[None], size=(height, width), mode="area")[0]
            self._captured[keyframe_index] = image.permute(1, 2, 0).reshape(-1, 3).to(self.device)
        return self._captured[keyframe_index]

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        """All rays of the next keyframe's image, flattened, the keyframe's index and image size, and its image."""
        if not self.keyframe_image_indices:
            raise RuntimeError("no keyframes set: call set_keyframes() before training")
        if self.train_count == 0 and step > 0:
            # A resumed edit starts past step 0: the keyframes of the steps before it are drawn (and dropped), so it
            # goes on in the order the uninterrupted run had.
            for _ in range(step):
                self._next_keyframe()
        self.train_count += 1
        keyframe_index = self._next_keyframe()
        camera = self.keyframe_camera(keyframe_index)
        height, width = int(camera.height[0, 0]), int(camera.width[0, 0])
        ray_bundle = camera.generate_rays(camera_indices=0, keep_shape=False)
        ray_bundle = ray_bundle.reshape((height * width,))
        batch = {
            "keyframe_index": keyframe_index,
            "image_height": height,
            "image_width": width,
            "image": self.captured_image(keyframe_index, height, width),
        }
        return ray_bundle, batch

    def _next_keyframe(self) -> int:
        """The next keyframe index: every keyframe once per epoch, in a fresh random order."""
        if not self._order:
            self._order = torch.randperm(len(self.keyframe_image_indices), generator=self._generator).tolist()
        return self._order.pop()

    def get_train_rays_per_batch(self) -> int:
        """Rays in one keyframe image at the render resolution (for the viewer's throughput estimate)."""
        if not self.keyframe_image_indices:
            return self.config.render_resolution**2
        camera = self.keyframe_camera(0)
        return int(camera.height[0, 0]) * int(camera.width[0, 0])
