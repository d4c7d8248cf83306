"""Prints the region IoU / precision / recall per recon and prompt of each variant (the JSON files here), and the
mean and worst IoU of each over the prompts both have."""

import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
# The rows are printed as the votes' table prints them.
_spec = importlib.util.spec_from_file_location("votes_table", HERE.parent / "region_votes_2026-12-05" / "table.py")
_votes_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_votes_table)
print_rows = _votes_table.print_rows

RECONS = ["blonde-bob-dark", "blue-long-tan", "brown-short-light", "demo"]
VARIANTS = ["whole_set_mean", "own_quarter"]

ious = print_rows(HERE, RECONS, VARIANTS)
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
