"""Train one attribute probe on the parts2 work folder's renders: python outputs/probes/train.py SEED BARE WIDE."""

import dataclasses
import sys

import torch
from rich.console import Console

from avatarstudio_ns.builtin.probe import ProbeConfig, train_probe
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, load_training_set

torch.set_num_threads(1)
seed, bare, wide = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
cfg = TrainBuiltinConfig(work_dir="outputs/builtin_parts2")
data = load_training_set(cfg, Console())
probe = train_probe(data, dataclasses.replace(ProbeConfig(), bare_iris_prob=bare, wide_iris_prob=wide), seed, Console())
torch.save(probe.state_dict(), f"outputs/probes/probe_s{seed}_b{bare}_w{wide}.pt")
