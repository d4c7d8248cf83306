"""Two sets of suite edits at their last step, one against the other (in brackets): one row per edit, then the mean
and worst of each measure and how many meet both targets. From a folder of benchmarks/results:

    python ../../suite_compare.py runs ../edit_suite_v4_jittered_2026-12-06/runs "without jitter" "with jitter"
"""

import json
import sys
from pathlib import Path

from avatarstudio_ns.scripts.runs import edit_steps
from avatarstudio_ns.scripts.suite import meets_targets

STEPS = edit_steps("fast", None)
"""The preset's edit length: runs not yet scored at their last step are left out."""


def last_scores(root: Path) -> dict[tuple[str, str], dict]:
    """(identity, prompt) -> the scores of the last scored step of each run under ``root``."""
    found = {}
    for path in sorted(root.glob("*/avatarstudio-edit-fast/*/suite_scores.json")):
        steps = json.loads(path.read_text())["steps"]
        if int(max(steps, key=int)) + 1 < STEPS:
            continue
        last = steps[max(steps, key=int)]
        found[(path.parts[-4], last["prompt"].removeprefix("photo of a person with "))] = last
    return found


def measures(s: dict) -> tuple[float, float, float, float, float, float]:
    t = s["temporal"]["target"]
    return (
        s["identity"]["psnr"],
        s["fidelity"]["hit_fraction_after"],
        s["fidelity"]["delta_e_after"],
        s["region_iou"],
        t["time_flicker"],
        t["view_flicker"],
    )


def main(new_root: Path, old_root: Path, new_label: str, old_label: str) -> None:
    new, old = last_scores(new_root), last_scores(old_root)
    print("| identity | prompt | identity PSNR (dB) | hit | ΔE | region IoU | time / view flicker |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for key in sorted(new):
        n = measures(new[key])
        o = measures(old[key]) if key in old else None
        rows.append((n, o))
        cells = [
            f"{n[i]:{fmt}}" + (f" ({o[i]:{fmt}})" if o else "") for i, fmt in enumerate((".2f", ".3f", ".1f", ".2f"))
        ]
        print(
            f"| {key[0]} | {key[1]} | {' | '.join(cells)} | "
            f"{n[4]:.4f} / {n[5]:.4f}" + (f" ({o[4]:.4f} / {o[5]:.4f})" if o else "") + " |"
        )
    for label, pick in ((new_label, 0), (f"{old_label}, the same edits", 1)):
        values = [r[pick] for r in rows if r[pick] is not None]
        if not values:
            continue
        met = sum(meets_targets({"psnr": v[0], "hit": v[1]}) for v in values)
        mean = [sum(v[i] for v in values) / len(values) for i in range(6)]
        print(
            f"\n{label} ({len(values)} edits): identity mean / worst {mean[0]:.2f} / "
            f"{min(v[0] for v in values):.2f} dB; "
            f"hit {mean[1]:.3f} / {min(v[1] for v in values):.3f}; ΔE mean {mean[2]:.1f}; "
            f"region IoU {mean[3]:.3f} / {min(v[3] for v in values):.3f}; "
            f"time / view flicker mean {mean[4]:.4f} / {mean[5]:.4f}; both targets met: {met} of {len(values)}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:5])
