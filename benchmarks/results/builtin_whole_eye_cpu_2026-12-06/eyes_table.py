"""Per held-out eye prompt: eyes judged right / shown / samples, for each judged_NAME_seeds.json given."""

import json
import sys

for name in sys.argv[1:]:
    d = json.load(open(f"outputs/probes/judged_{name}_seeds.json"))
    cells = [
        f"{p.removeprefix('photo of a person with ')}: "
        f"{c['eyes']['correct']}/{c['eyes']['shown']}/{c['eyes']['samples']}"
        for p, c in d["per_prompt"].items()
        if "eyes" in c
    ]
    print(name, " | ".join(cells))
