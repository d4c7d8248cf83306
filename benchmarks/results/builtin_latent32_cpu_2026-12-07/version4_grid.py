"""The shipped model (version 4) sampled on snapshot.py's prompts, for a side-by-side look at the same settings.

python benchmarks/results/builtin_latent32_cpu_2026-12-07/version4_grid.py GRID.jpg

8 samples per prompt, DDIM 50, guidance 7.5, seed 0 (the evaluation's settings), one thread.
"""

import sys

import torch
from look_prompts import LOOK_PROMPTS
from rich.console import Console

from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, sample_model, save_grid
from avatarstudio_ns.guidance.loading import builtin_model_dir

torch.set_num_threads(1)
samples = sample_model(builtin_model_dir(), LOOK_PROMPTS, EvalConfig(), Console())
save_grid(samples, LOOK_PROMPTS, sys.argv[1], scale=1)
