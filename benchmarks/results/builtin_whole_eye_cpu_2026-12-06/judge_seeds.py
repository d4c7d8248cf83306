"""Judge a model's samples of several sample seeds together (8 samples per prompt per seed) with the three probes.

python outputs/probes/judge_seeds.py NAME MODEL_DIR SEED [SEED ...] -> outputs/probes/judged_NAME_seeds.json
Samples are cached as samples_NAME.pt (seed 0, as judge.py) and samples_NAME_s{SEED}.pt.
"""

import dataclasses
import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from avatarstudio_ns.builtin.head_images import describe
from avatarstudio_ns.builtin.probe import PROBED, AttributeProbe, ProbeEnsemble
from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, judge, pool, prompt_targets, sample_model
from avatarstudio_ns.builtin.train import TrainBuiltinConfig

torch.set_num_threads(1)
name, model, seeds = sys.argv[1], Path(sys.argv[2]), [int(s) for s in sys.argv[3:]]
heldout, seen = prompt_targets(TrainBuiltinConfig().data.heldout_pairs)
targets = heldout + seen
prompts = [describe(t) for t in targets]
parts = []
for seed in seeds:
    cache = Path(f"outputs/probes/samples_{name}.pt" if seed == 0 else f"outputs/probes/samples_{name}_s{seed}.pt")
    if not cache.exists():
        torch.save(sample_model(model, prompts, dataclasses.replace(EvalConfig(), seed=seed), Console()), cache)
    parts.append(torch.load(cache))
samples = torch.cat(parts, 1)
probes = []
for s in (0, 1, 2):
    p = AttributeProbe(16, 64)
    p.load_state_dict(torch.load(f"outputs/probes/probe_s{s}_b0.0_w0.0.pt"))
    probes.append(p.eval())
ens = ProbeEnsemble(probes)
counts = [judge(ens.predict(s), t) for t, s in zip(targets, samples, strict=True)]
result = {
    "seeds": seeds,
    "samples_per_prompt": samples.shape[1],
    "heldout": pool(counts[: len(heldout)]),
    "seen": pool(counts[len(heldout) :]),
    "per_prompt": dict(zip(prompts, counts, strict=True)),
}
Path(f"outputs/probes/judged_{name}_seeds.json").write_text(json.dumps(result, indent=1))
for group in ("heldout", "seen"):
    h = result[group]
    print(
        f"{name:10s} {group:7s} n={samples.shape[1]} "
        + " ".join(f"{k} {h[k]['accuracy'] * 100:.1f} ({h[k]['coverage'] * 100:.0f})" for k in PROBED if k in h)
    )
