"""Record driver: the edit region fitted on the first frame's keyframes only, the edit itself on all keyframes (the
paper's); not an option of the package (yet).

The ablation on the suite found the "no time stamps" keyframes better, and the region alone fitted on the first
frame's cameras better on the blonde bob (docs/edit_settings.md, "The ablation on the suite"). This driver keeps the
guidance's keyframes and gives the region only the keyframe cameras at the first keyframe's time. Everything else is
`avatarstudio suite` unchanged, so the runs' recorded settings digest is VT-SDS's: keep their folder apart.

    python region_first_frame.py --output outputs/region_first_frame --identities blonde-bob-dark \
        --prompts prompts.yaml --checkpoint-every 300
"""

import tyro

from avatarstudio_ns.edit import pipeline
from avatarstudio_ns.scripts.suite import SuiteCommand

_fit_edit_region = pipeline.fit_edit_region


def _fit_on_the_first_frame(model, cameras, base, prompt, config):
    times = [float(c.times.reshape(-1)[0]) for c in cameras]
    first = [c for c, t in zip(cameras, times, strict=True) if t == min(times)]
    print(f"Region fitted on {len(first)} of {len(cameras)} keyframes (time {min(times):g})", flush=True)
    return _fit_edit_region(model, first, base, prompt, config)


pipeline.fit_edit_region = _fit_on_the_first_frame

if __name__ == "__main__":
    tyro.cli(SuiteCommand).main()
