"""A look at the 32x32 UNet mid-training: its checkpoint's EMA weights exported as a model folder, then sampled.

python benchmarks/results/builtin_latent32_cpu_2026-12-07/snapshot.py OUT_FOLDER GRID.jpg [WORK_FOLDER]

WORK_FOLDER: the run's work folder (default outputs/latent32/work, the run from scratch); the model's sizes are read
from its settings.json.

The folder (Stable Diffusion's layout, as train-builtin writes it) records the step in training.json; it can also
start a run again with `--unet.init-from` (a fresh optimiser) where the work folder's checkpoint is lost. The grid:
the held-out eye pairs and a few seen prompts, 8 samples each (DDIM 50, guidance 7.5, seed 0, as the evaluation).
One thread.
"""

import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from look_prompts import LOOK_PROMPTS
from rich.console import Console

from avatarstudio_ns.builtin.char_tokenizer import BOS_TOKEN, EOS_TOKEN, build_vocab
from avatarstudio_ns.builtin.head_images import caption_vocabulary
from avatarstudio_ns.builtin.sample_accuracy import EvalConfig, sample_model, save_grid
from avatarstudio_ns.builtin.small_model import SmallModelConfig, build_text_encoder, build_unet
from avatarstudio_ns.builtin.train import TrainBuiltinConfig, export_model

torch.set_num_threads(1)
out, grid = Path(sys.argv[1]), Path(sys.argv[2])
work = Path(sys.argv[3] if len(sys.argv) > 3 else "outputs/latent32/work")
recorded = json.loads((work / "settings.json").read_text())["model"]
sizes = SmallModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
cfg = TrainBuiltinConfig(work_dir=work, output_dir=out, model=sizes)
state = torch.load(work / "unet.ckpt", weights_only=False)
vocab, _ = build_vocab(sizes.words)
unet = build_unet(sizes)
text_encoder = build_text_encoder(sizes, len(vocab), vocab[BOS_TOKEN], vocab[EOS_TOKEN])
for name, module in (("unet", unet), ("text_encoder", text_encoder)):
    module.load_state_dict(state[name])
    with torch.no_grad():
        for key, p in module.named_parameters():
            p.copy_(state["ema"][f"{name}.{key}"])
vae = AutoencoderKL.from_pretrained(work / "vae")
scaling = float(torch.load(work / "latents.pt", weights_only=False, mmap=True)["scaling_factor"])
facts = {"snapshot_of_step": int(state["step"]), "caption_words": list(caption_vocabulary()), "config": str(cfg)}
export_model(cfg, unet, text_encoder, vae, scaling, facts)
samples = sample_model(out, LOOK_PROMPTS, EvalConfig(), Console())
save_grid(samples, LOOK_PROMPTS, grid, scale=1)
print(f"step {state['step']}: {out}, {grid}")
