"""Where blue-long-tan's dark-skin edit misses: the nearest named skin tone of each measured pixel (as the suite's
fidelity measure names it), inside and outside the edit region, per view and by the synth's shading, at the suite's
views; saves the renders for by_shading.py.

    python benchmarks/results/dark_skin_misses_2026-12-07/misses.py <suite output>/runs/blue-long-tan "dark skin" \
        renders.npz     # from the repository root (the runs' configs name their data relative to it)
"""

import sys
from pathlib import Path

import numpy as np

from avatarstudio_ns.eval import metrics
from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    _fidelity_mask,
    collect_views,
    load_pipeline,
    pipeline_outputs,
    render_edit_region,
    render_images,
)
from avatarstudio_ns.eval.prompt_set import load_prompt_set
from avatarstudio_ns.scripts.suite import render_sized

root, prompt_words, output = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
recon = load_pipeline(next((root / "avatarstudio-recon-cpu").rglob("config.yml")))
run_name = "photo-of-a-person-with-" + prompt_words.replace(" ", "-")
edit = load_pipeline(root / "avatarstudio-edit-fast" / run_name / "config.yml")
settings = EvalSettings(num_train_cameras=3, timestep_stride=24)  # the suite's views
views = render_sized(collect_views(*pipeline_outputs(recon), settings))
prompt_set = load_prompt_set(Path(__file__).parents[1] / "edit_suite" / "hair_skin.yaml")
prompt = next(p for p in prompt_set.prompts if prompt_words in p.prompt)
original = render_images(recon.model, views.cameras)
edited = render_images(edit.model, views.cameras)
region = render_edit_region(edit.model, views.cameras)
mask = _fidelity_mask(views, prompt, settings.fidelity_erosion)
palette = prompt.palette()
names = list(palette)
table = np.array([palette[n] for n in names])
shading, specular = views.shading[mask], views.specular[mask]


def nearest(image: np.ndarray) -> np.ndarray:
    return metrics.lit_distances(image[mask], table, shading, specular).argmin(1)


def shares(indices: np.ndarray) -> dict[str, float]:
    return {names[i]: round(float(np.mean(indices == i)), 3) for i in np.unique(indices)}


print("original", shares(nearest(original)))
named = nearest(edited)
hit = named == names.index(prompt.target_name)
inside = region[mask] > 0.5
print("edited", shares(named), "inside the region:", round(float(inside.mean()), 3))
print("  inside", shares(named[inside]))
print("  outside", shares(named[~inside]))
image_of_pixel = np.nonzero(mask)[0]
for v in range(len(views)):
    pixels = image_of_pixel == v
    if pixels.any():
        print(
            f"  view {v} camera {views.camera_indices[v]} frame {views.timestep_indices[v]}: {pixels.sum()} pixels, "
            f"hit {hit[pixels].mean():.2f}, inside {inside[pixels].mean():.2f}, shading {shading[pixels].mean():.2f}"
        )
lab = metrics.srgb_to_lab(edited[mask])
print("mean L*a*b* of hits", lab[hit].mean(0).round(1), "of misses", lab[~hit].mean(0).round(1))
print(f"shading of hits {shading[hit].mean():.3f}, of misses {shading[~hit].mean():.3f}")
np.savez_compressed(
    output, orig=original, ed=edited, reg=region, mask=mask, shading=views.shading, specular=views.specular
)
