"""The viewer's first camera: the capture's frontal camera, looking at the head.

viser starts every client at a fixed point a few tenths of a nerfstudio unit from the origin, which in our scene box
(the head centred at the origin, about half a unit wide) is inside or against the head: a user would see a blurred
close-up and have to find the head first. This control moves each new client's camera to the frontal training camera.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerControl

from avatarstudio_ns.data.frontal import frontal_image_index

APPROACH = 0.9
"""The viewer's first camera sits at this fraction of the frontal camera's distance from the head: just in front of
that camera, whose frustum (drawn with its captured image) would otherwise fill the view."""


def frontal_pose(dataset) -> dict[str, Any]:
    """Position, look-at point, up direction (viser units) and vertical field of view (radians) of the frontal
    training camera of ``dataset``, moved toward the scene centre by :data:`APPROACH` and looking at it."""
    camera = dataset.cameras[frontal_image_index(dataset)]
    c2w = camera.camera_to_worlds.reshape(3, 4).double().cpu().numpy()
    fy, cy = float(camera.fy.reshape(-1)[0]), float(camera.cy.reshape(-1)[0])
    return {
        "position": tuple(c2w[:, 3] * APPROACH * VISER_NERFSTUDIO_SCALE_RATIO),
        "look_at": (0.0, 0.0, 0.0),
        "up_direction": tuple(c2w[:, 1] / np.linalg.norm(c2w[:, 1])),
        "fov": 2.0 * float(np.arctan(cy / fy)),
    }


class FrontalViewerCamera(ViewerControl):
    """Puts the camera of every client that connects to the viewer at the capture's frontal camera."""

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self.pose = frontal_pose(viewer.pipeline.datamanager.train_dataset)
        self.viser_server.on_client_connect(self._place)

    def _place(self, client) -> None:
        """Waits for the client's first camera report (viser's camera state is unset until then), then moves it."""
        placed = False

        @client.camera.on_update
        def _(camera) -> None:
            nonlocal placed
            if placed:
                return
            placed = True
            with client.atomic():
                camera.fov = self.pose["fov"]
                camera.up_direction = self.pose["up_direction"]
                camera.position = self.pose["position"]
                camera.look_at = self.pose["look_at"]
