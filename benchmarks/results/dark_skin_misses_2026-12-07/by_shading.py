"""Blue-long-tan's dark skin by the synth's shading: ΔE of the edited pixels to dark and brown skin as the synth shows
each under the pixel's light, and the albedo the edit shows (pixel less highlight, over shading), from the renders
misses.py saved (renders.npz)."""

import sys

import numpy as np

from avatarstudio_ns.data.synth.attributes import SKIN_TONES
from avatarstudio_ns.eval.metrics import delta_e76, lit_distances, srgb_to_lab

renders = np.load(sys.argv[1])
mask = renders["mask"]
shading, specular = renders["shading"][mask], renders["specular"][mask]
edited, original = renders["ed"][mask], renders["orig"][mask]
dark, brown = np.array(SKIN_TONES["dark"]), np.array(SKIN_TONES["brown"])
print(
    "shading band | pixels | ΔE to dark | ΔE to brown | dark-brown apart | nearer dark than brown | edit's albedo | "
    "recon's albedo"
)
for low, high in ((0, 0.4), (0.4, 0.5), (0.5, 0.6), (0.6, 0.8), (0.8, 1.1)):
    band = (shading >= low) & (shading < high)
    distances = lit_distances(edited[band], np.stack([dark, brown]), shading[band], specular[band])
    apart = delta_e76(srgb_to_lab(dark * shading[band].mean()), srgb_to_lab(brown * shading[band].mean()))
    albedo = ((edited[band] - specular[band, None]) / shading[band, None]).mean(0)
    recon = ((original[band] - specular[band, None]) / shading[band, None]).mean(0)
    nearer_dark = np.mean(distances[:, 0] < distances[:, 1])
    print(
        f"[{low}, {high}) | {band.sum()} | {distances[:, 0].mean():.1f} | {distances[:, 1].mean():.1f} | {apart:.1f} | "
        f"{nearer_dark:.2f} | {albedo.round(2)} | {recon.round(2)}"
    )
