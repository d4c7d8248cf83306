"""The dynamic head NeRF of AvatarStudio (METHOD.md section 1): ``ns-train avatarstudio-recon``.

One role per module: ``frame_codes`` (per-frame codes e_j, interpolated in time), ``deformation``
(p_c = p + D(p, e_j)), ``grid_encoding`` (the deformation's dense feature grids), ``field`` (the
canonical appearance A), ``model`` (sampling, rendering, losses), ``regularizers`` (its losses beyond the
photometric one), ``image_metrics`` (held-out metrics per timestep), ``schedulers``, ``viewer_camera`` (where the
viewer opens), ``trainer`` (nerfstudio's trainer, checkpoints written atomically).
"""

from avatarstudio_ns.recon.deformation import DeformationField
from avatarstudio_ns.recon.field import CanonicalAppearanceField
from avatarstudio_ns.recon.frame_codes import FrameCodes
from avatarstudio_ns.recon.model import AvatarReconModel, AvatarReconModelConfig

__all__ = [
    "AvatarReconModel",
    "AvatarReconModelConfig",
    "CanonicalAppearanceField",
    "DeformationField",
    "FrameCodes",
]
