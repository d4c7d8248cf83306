import json
import sys
from pathlib import Path

KEYS = ("hair", "skin", "eyes", "lips", "brows", "style")
names = {
    "probe_s0_b0.0_w0.0": "seed 0 (earlier records)",
    "probe_s1_b0.0_w0.0": "seed 1",
    "probe_s2_b0.0_w0.0": "seed 2",
    "ensemble": "**the listed probes together**",  # std: seeds 0-2; all: with the two eye-variation probes
    "probe_s0_b0.5_w0.5": "eye variation, seed 0",
    "probe_s1_b0.5_w0.5": "eye variation, seed 1",
}
for tag in sys.argv[1:]:
    prefix, model = tag.split(":")
    d = json.loads(Path(f"outputs/probes/judged_{prefix}_{model}.json").read_text())
    print(f"\n{model} ({prefix})\n")
    print("| probe | real renders: eyes, lips | " + " | ".join(KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for j, r in d.items():
        for group in ("heldout",):
            cells = []
            for k in KEYS:
                m = r[group].get(k)
                cells.append(
                    f"{m['accuracy'] * 100:.1f} % ({m['coverage'] * 100:.0f} %)"
                    if k in ("eyes", "lips", "brows")
                    else f"{m['accuracy'] * 100:.1f} %"
                )
            print(
                f"| {names.get(j, j)} | {r['real']['eyes'] * 100:.1f} %, {r['real']['lips'] * 100:.1f} % | "
                + " | ".join(cells)
                + " |"
            )
