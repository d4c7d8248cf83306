"""The capture's frontal view: where renders of an avatar start by default."""

from __future__ import annotations

import torch
from nerfstudio.data.datasets.base_dataset import InputDataset


def frontal_image_index(dataset: InputDataset) -> int:
    """Index of the frontal camera's first image in ``dataset`` (the first image if none is marked)."""
    metadata = dataset.metadata
    frontal = metadata.get("frontal_camera_index")
    if frontal is None or "camera_indices" not in metadata:
        return 0
    hits = torch.nonzero(metadata["camera_indices"] == frontal).flatten()
    if len(hits) == 0:
        return 0
    first = hits[torch.argmin(metadata["timestep_indices"][hits])]
    return int(first)
