"""Input dataset that adds each image's foreground mask to the batch as ``fg_mask``.

The dataparser keeps foreground masks out of ``DataparserOutputs.mask_filenames`` on purpose: nerfstudio's
pixel sampler samples only inside a ``mask``, but the reconstruction needs background rays too (to learn the
backdrop and an empty space around the head). Under its own key the mask is gathered per ray by the pixel
sampler like the image, without steering the sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image
from torch import Tensor

from avatarstudio_ns.data.dataparser import CaptureFormatError


def load_fg_mask(path: Path, scale_factor: float = 1.0) -> Float[Tensor, "height width 1"]:
    """Reads a foreground mask (white = head) as a float tensor in {0, 1}.

    Args:
        path: Mask image; any PIL mode, converted to greyscale and thresholded at half intensity.
        scale_factor: Resize factor, the same one InputDataset applies to the images.

    Returns:
        The mask, 1 on the foreground.
    """
    with Image.open(path) as pil_mask:
        pil_mask = pil_mask.convert("L")
        if scale_factor != 1.0:
            width, height = pil_mask.size
            # Nearest neighbour keeps the mask binary; the size rounding matches InputDataset's images.
            pil_mask = pil_mask.resize(
                (int(width * scale_factor), int(height * scale_factor)), resample=Image.Resampling.NEAREST
            )
        mask = np.asarray(pil_mask) > 127
    return torch.from_numpy(mask).float().unsqueeze(-1)


class AvatarDataset(InputDataset):
    """InputDataset whose items carry ``fg_mask`` (Float[Tensor, "H W 1"] in {0, 1}) when the capture has masks.

    Args:
        dataparser_outputs: Outputs of the avatarstudio dataparser (``fg_mask_filenames`` in its metadata).
        scale_factor: The scaling factor for the images and masks.
    """

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        self.fg_mask_filenames: list[Path] | None = self.metadata.get("fg_mask_filenames")

    def get_metadata(self, data: dict) -> dict:
        """Adds the foreground mask of ``data["image_idx"]`` under ``fg_mask``, if the capture has masks."""
        if not self.fg_mask_filenames:
            return {}
        path = self.fg_mask_filenames[data["image_idx"]]
        fg_mask = load_fg_mask(path, self.scale_factor)
        if fg_mask.shape[:2] != data["image"].shape[:2]:
            raise CaptureFormatError(
                f"The mask {path} is {fg_mask.shape[1]}x{fg_mask.shape[0]} pixels but its image is "
                f"{data['image'].shape[1]}x{data['image'].shape[0]}."
            )
        return {"fg_mask": fg_mask}
