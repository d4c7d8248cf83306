"""The viewer opens at the capture's frontal camera (viser's default camera sits inside the head)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerControl

from avatarstudio_ns.data.frontal import frontal_image_index
from avatarstudio_ns.recon.viewer_camera import APPROACH


class FakeCamera:
    """The parts of viser's CameraHandle the control uses: update callbacks and pose attributes."""

    def __init__(self) -> None:
        self.callbacks = []
        self.fov = self.up_direction = self.position = self.look_at = None

    def on_update(self, callback):
        self.callbacks.append(callback)
        return callback


def test_each_viewer_client_starts_at_the_frontal_camera_looking_at_the_head(recon):
    from nerfstudio.utils.eval_utils import eval_setup

    _, config = recon
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
    controls = [control for _, control in parse_object(pipeline, ViewerControl, "Custom Elements")]
    assert len(controls) == 1
    connect = []
    server = SimpleNamespace(on_client_connect=connect.append)
    controls[0]._setup(SimpleNamespace(viser_server=server, pipeline=pipeline))

    client = SimpleNamespace(camera=FakeCamera(), atomic=contextlib.nullcontext)
    connect[0](client)
    assert client.camera.position is None, "viser's camera state is unset until the client reports it"
    for callback in list(client.camera.callbacks):
        callback(client.camera)
    dataset = pipeline.datamanager.train_dataset
    frontal = dataset.cameras[frontal_image_index(dataset)]
    c2w = frontal.camera_to_worlds.reshape(3, 4).double().numpy()
    assert np.allclose(client.camera.position, c2w[:, 3] * APPROACH * VISER_NERFSTUDIO_SCALE_RATIO)
    assert np.allclose(client.camera.look_at, 0.0)
    assert client.camera.fov == pytest.approx(2 * np.arctan(float(frontal.cy) / float(frontal.fy)))
    # The head (inside the unit scene box) is in front of the camera, not around it.
    assert np.linalg.norm(c2w[:, 3]) > 1.5
    # Later updates are the user's moves: the camera is placed once.
    client.camera.position = (1.0, 2.0, 3.0)
    for callback in client.camera.callbacks:
        callback(client.camera)
    assert client.camera.position == (1.0, 2.0, 3.0)
