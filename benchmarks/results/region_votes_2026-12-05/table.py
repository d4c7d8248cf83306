"""Prints the region IoU / precision / recall of each variant per recon and prompt (the JSON files here)."""

import json
from pathlib import Path

HERE = Path(__file__).parent
RECONS = ["blonde-bob-dark", "blue-long-tan", "brown-short-light", "demo", "grey-short-tan"]
VARIANTS = [
    "relevance_mean",
    "votes",
    "votes_0.4",
    "grown_at_1",
    "grown_at_0.75",
    "votes_surely_outside_q25",
    "votes_no_surely_outside",
]


def print_rows(here: Path, recons: list[str], variants: list[str]) -> dict[str, dict[tuple[str, str], float]]:
    """Prints one markdown row per recon and prompt (IoU / precision / recall of each variant, from
    ``<recon>_<variant>.json`` in ``here``) and returns each variant's IoU per (recon, prompt)."""
    print("| avatar | prompt | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 2) + "|")
    ious = {v: {} for v in variants}
    for recon in recons:
        runs = {v: json.loads(p.read_text())["results"] for v in variants if (p := here / f"{recon}_{v}.json").exists()}
        for prompt in runs.get(variants[0], {}):
            cells = []
            for v in variants:
                r = runs.get(v, {}).get(prompt)
                cells.append(f"{r['iou']:.3f} / {r['precision']:.3f} / {r['recall']:.3f}" if r else "")
                if r:
                    ious[v][(recon, prompt)] = r["iou"]
            print(f"| {recon} | {prompt.split('with ')[1]} | " + " | ".join(cells) + " |")
    return ious


if __name__ == "__main__":
    ious = print_rows(HERE, RECONS, VARIANTS)
    print()
    for v in VARIANTS:
        common = [k for k in ious[v] if k in ious["relevance_mean"]]
        if common:
            mine = [ious[v][k] for k in common]
            base = [ious["relevance_mean"][k] for k in common]
            better = sum(a > b for a, b in zip(mine, base, strict=True))
            print(
                f"- {v}: {len(common)} prompts, mean / worst IoU {sum(mine) / len(mine):.3f} / {min(mine):.3f} "
                f"(relevance_mean on the same: {sum(base) / len(base):.3f} / {min(base):.3f}); higher on {better}"
            )
