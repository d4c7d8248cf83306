"""Judge the same samples with several probes and with their ensemble (``ProbeEnsemble``).

python outputs/probes/judge.py NAME MODEL_DIR PROBE.pt [PROBE.pt ...]  -> outputs/probes/judged_NAME.json
"""

import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from avatarstudio_ns.builtin.head_images import HeadImages, _load_shard, describe
from avatarstudio_ns.builtin.probe import PROBED, AttributeProbe, ProbeEnsemble, visible_regions
from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, judge, pool, prompt_targets, real_accuracy, sample_model
from avatarstudio_ns.builtin.train import TrainBuiltinConfig

torch.set_num_threads(1)
name, model, probe_files = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
heldout, seen = prompt_targets(TrainBuiltinConfig().data.heldout_pairs)
targets = heldout + seen
prompts = [describe(t) for t in targets]
cache = Path(f"outputs/probes/samples_{name}.pt")
if cache.exists():
    samples = torch.load(cache)
else:
    samples = sample_model(model, prompts, EvalConfig(), Console())
    torch.save(samples, cache)
probes = []
for f in probe_files:
    p = AttributeProbe(16, 64)
    p.load_state_dict(torch.load(f))
    probes.append(p.eval())


def predict(ps, x):
    return ProbeEnsemble(ps).predict(x)


ev = HeadImages.concat([_load_shard(p) for p in sorted(Path("outputs/builtin_vis/data_eval").glob("*.npz"))])
shown = visible_regions(ev.labels)
results = {}
judges = {Path(f).stem: [p] for f, p in zip(probe_files, probes, strict=True)}
if len(probes) > 1:
    judges["ensemble"] = probes
for jname, ps in judges.items():
    counts = [judge(predict(ps, s), t) for t, s in zip(targets, samples, strict=True)]
    real = real_accuracy(predict(ps, ev.images()), ev.attrs, shown)
    results[jname] = {
        "real": {k: v["accuracy"] for k, v in real.items()},
        "heldout": pool(counts[: len(heldout)]),
        "seen": pool(counts[len(heldout) :]),
        "per_prompt": dict(zip(prompts, counts, strict=True)),
    }
    h = results[jname]["heldout"]
    print(
        f"{name:8s} {jname:22s} real eyes {real['eyes']['accuracy']:.3f} lips {real['lips']['accuracy']:.3f} | "
        + "held-out "
        + " ".join(f"{k} {h[k]['accuracy'] * 100:.1f} ({h[k]['coverage'] * 100:.0f})" for k in PROBED),
        flush=True,
    )
Path(f"outputs/probes/judged_{name}.json").write_text(json.dumps(results, indent=1))
