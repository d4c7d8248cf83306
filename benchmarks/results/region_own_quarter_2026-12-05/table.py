"""Prints the region IoU / precision / recall per recon and prompt of each variant (the JSON files here), and the
mean and worst IoU of each over the prompts both have."""

import json
from pathlib import Path

HERE = Path(__file__).parent
RECONS = ["blonde-bob-dark", "blue-long-tan", "brown-short-light", "demo"]
VARIANTS = ["whole_set_mean", "own_quarter"]

print("| avatar | prompt | " + " | ".join(VARIANTS) + " |")
print("|---" * (len(VARIANTS) + 2) + "|")
ious = {v: {} for v in VARIANTS}
for recon in RECONS:
    runs = {v: json.loads(p.read_text())["results"] for v in VARIANTS if (p := HERE / f"{recon}_{v}.json").exists()}
    for prompt in runs.get(VARIANTS[0], {}):
        cells = []
        for v in VARIANTS:
            r = runs.get(v, {}).get(prompt)
            cells.append(f"{r['iou']:.3f} / {r['precision']:.3f} / {r['recall']:.3f}" if r else "")
            if r:
                ious[v][(recon, prompt)] = r["iou"]
        print(f"| {recon} | {prompt.split('with ')[1]} | " + " | ".join(cells) + " |")
print()
base_name = VARIANTS[0]
for v in VARIANTS:
    common = [k for k in ious[v] if k in ious[base_name]]
    for kind in ("hair", "skin", ""):
        keys = [k for k in common if kind in k[1]]
        if not keys:
            continue
        mine = [ious[v][k] for k in keys]
        base = [ious[base_name][k] for k in keys]
        better = sum(a > b + 0.0005 for a, b in zip(mine, base, strict=True))
        worse = sum(a < b - 0.0005 for a, b in zip(mine, base, strict=True))
        print(
            f"- {v}, {kind or 'all'} prompts ({len(keys)}): mean / worst IoU {sum(mine) / len(mine):.3f} / "
            f"{min(mine):.3f} ({base_name}: {sum(base) / len(base):.3f} / {min(base):.3f}); higher on {better}, "
            f"lower on {worse}"
        )
