"""Train a probe: python outputs/probes/train.py SEED BARE WIDE -> outputs/probes/probe_s{SEED}_b{BARE}_w{WIDE}.pt"""

import sys
from pathlib import Path

import torch
from rich.console import Console

from avatarstudio_ns.builtin.head_images import HeadImages, _load_shard
from avatarstudio_ns.builtin.probe import ProbeConfig, train_probe

torch.set_num_threads(1)
seed, bare, wide = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
data = HeadImages.concat([_load_shard(p) for p in sorted(Path("outputs/builtin_vis/data_train").glob("*.npz"))])
probe = train_probe(data, ProbeConfig(bare_iris_prob=bare, wide_iris_prob=wide, log_every=500), seed, Console())
torch.save(probe.state_dict(), f"outputs/probes/probe_s{seed}_b{bare}_w{wide}.pt")
