"""Train the built-in text-to-image model of synthetic heads and write it in the diffusers folder layout.

Stages, each resumable from the work folder: render the captioned heads (cached shards), train the VAE,
encode the training set, train the UNet with the text encoder, write the model folder atomically. Re-running
the same command after an interruption continues where it stopped (from the last checkpoint after a kill, from
the exact step after a sitting's time ran out); after completion it only re-exports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from transformers import CLIPTokenizer

from avatarstudio_ns.atomic import atomic_write_folder, atomic_write_text
from avatarstudio_ns.builtin.char_tokenizer import BOS_TOKEN, DEFAULT_WORDS, EOS_TOKEN, build_vocab, write_tokenizer
from avatarstudio_ns.builtin.head_images import HeadDatasetConfig, HeadImages, build_dataset, caption_vocabulary
from avatarstudio_ns.builtin.sitting import Sitting, SittingOver
from avatarstudio_ns.builtin.small_model import (
    SmallModelConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    model_index,
)
from avatarstudio_ns.builtin.unet_stage import UnetStageConfig, train_unet
from avatarstudio_ns.builtin.vae_stage import VaeStageConfig, encode_latents, train_vae
from avatarstudio_ns.data.synth import EYE_COLORS, HAIR_COLORS, HAIR_STYLES, LIP_COLORS, SKIN_TONES
from avatarstudio_ns.guidance.loading import builtin_model_dir
from avatarstudio_ns.threads import torch_threads

SHIPPED_V1_WORDS: tuple[str, ...] = (
    *DEFAULT_WORDS,
    *("grey", "pale", "light", "medium", "tan", "dark", "hazel", "natural", "short", "long", "and"),
)
"""The whole-word tokens of the first shipped model (its ``tokenizer/``), frozen so that ``builtin_sizes_v1``
keeps describing it whatever the captions of later models say."""


def caption_words() -> tuple[str, ...]:
    """Every word the training captions use (``describe``), so each is one token; unknown words still tokenise
    character by character."""
    names = [*HAIR_COLORS, *SKIN_TONES, *EYE_COLORS, *LIP_COLORS, *HAIR_STYLES]
    names += ["short", "long", "and", "eyebrows", "in", "bob"]
    extra = [w for w in dict.fromkeys(names) if w not in DEFAULT_WORDS]
    return (*DEFAULT_WORDS, *extra)


def builtin_sizes_v1() -> SmallModelConfig:
    """Sizes of the first shipped model: 64 px images, 8x8x4 latents (Stable Diffusion's 8x downsampling), ~27 MB.

    A latent cell covers 8x8 pixels, so an eye is a fraction of one: its samples had no eyes or lips.
    """
    return SmallModelConfig(
        resolution=64,
        vae_channels=(16, 32, 64, 64),
        vae_layers_per_block=1,
        latent_channels=4,
        unet_channels=(64, 128, 128),
        unet_layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=8,
        text_hidden_size=64,
        text_layers=2,
        text_heads=2,
        words=SHIPPED_V1_WORDS,
    )


def builtin_sizes_v3() -> SmallModelConfig:
    """Sizes of the third built-in model (shipped until 2026-12-06): 64 px images, 16x16x8 latents (4x
    downsampling), ~26 MB; v prediction on a zero-terminal-SNR schedule.

    Eight latent channels instead of Stable Diffusion's four: a 4x4 pixel cell holds skin, sclera, iris and lid, and
    with four channels the autoencoder's round trip kept the probe's eye colour in 58 % of real renders, lip colour in
    88 % (5500 steps); with eight, 73 % and 93 % (6500 steps, trained beside it on the same GPU for the same time),
    for the same cost per UNet step (docs/builtin_model.md, "Version 3"). Zero
    terminal SNR with v prediction makes samples face the camera (the model then sets the large areas' colours at the
    noisiest step instead of settling on a head of one colour seen from behind).

    A latent cell covers 4x4 pixels, so irises, brows and lips have cells of their own. On the 4x larger latent,
    v1's UNet is about 4x slower per step (measured at batch 64 on one core of a loaded 2-core CPU: 4.8 s against
    1.2 s), so the widths are shifted instead: a convolution-only level at 16x16 (32 channels) on top of v1's
    levels (64 at 8x8, 128 at 4x4 and 2x2). Cross-attention stays at 8x8 and coarser: one 8 px cell holds a whole
    eye, so the caption's colour words still reach each region, while attention at 16x16 (even cross-attention
    only, diffusers' ``only_cross_attention``) cost 1 s more per step. Measured the same way: 1.45 s per step
    against v1's 1.2 s, the same parameter count (5.7 M). The VAE drops v1's 8x8 level, (16, 32, 64): the same
    cost per step as v1's (0.4 s on 32 px crops, 1.6 s on whole images, batch 32); wider first levels cost 2.5x.
    """
    return SmallModelConfig(
        resolution=64,
        vae_channels=(16, 32, 64),
        vae_layers_per_block=1,
        latent_channels=8,
        unet_channels=(32, 64, 128, 128),
        unet_attention=(False, True, True, False),
        unet_layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=8,
        text_hidden_size=64,
        text_layers=2,
        text_heads=2,
        words=caption_words(),
        prediction_type="v_prediction",
        zero_terminal_snr=True,
    )


def builtin_sizes() -> SmallModelConfig:
    """Sizes of the shipped built-in model (v4): v3's (``builtin_sizes_v3``) with cross-attention at 16x16 as well.

    At 16x16 a cell holds one iris or part of the lips, so attention there lets a colour word reach that cell alone.
    Grown into v3's UNet (it starts as the identity) and trained on with the eyes and lips weighted, it lifted held-out
    lip colour from 76.6 to 89.7 % and eye colour from 28.9 to 36.1 % against the same loss without it
    (benchmarks/results/builtin_attention_growth_cpu_2026-12-06); the shipped v4 weights were made that way
    (docs/builtin_model.md). It costs about 1.8x per UNet step on one CPU core (4.6 s against 2.6 s at batch 128,
    the other core busy); the weights grow by 0.3 MB.
    """
    return dataclasses.replace(builtin_sizes_v3(), unet_attention=(True, True, True, False))


BUILTIN_SIZES = {"v1": builtin_sizes_v1, "v3": builtin_sizes_v3, "v4": builtin_sizes}
"""Versions of the built-in model's sizes; v1 is the first shipped model, v4 the shipped one (trained by default)."""


@dataclass
class TrainBuiltinConfig:
    """Everything that defines a training run of the built-in model."""

    work_dir: Path = Path("outputs/builtin_work")
    """Cache of renders, checkpoints and stage outputs; re-running with the same folder resumes."""
    output_dir: Path = field(default_factory=builtin_model_dir)
    """Where the finished diffusers folder is written (replaced atomically)."""
    data: HeadDatasetConfig = field(default_factory=HeadDatasetConfig)
    """The training renders."""
    model: SmallModelConfig = field(default_factory=builtin_sizes)
    """Network sizes."""
    vae: VaeStageConfig = field(default_factory=VaeStageConfig)
    """Autoencoder training."""
    unet: UnetStageConfig = field(default_factory=UnetStageConfig)
    """UNet and text-encoder training."""
    seed: int = 0
    """Seed of weights, batches and noise (the renders have their own, ``data.seed``)."""
    device: str = "auto"
    """Where the networks train (and the evaluation samples them): "cuda" (or "cuda:N"), "cpu", or "auto" for the GPU
    when torch sees one. Renders, batches and noise are drawn on the CPU either way; a run may continue on another
    device than it started on."""
    threads: int = 1
    """Torch threads. One is the fastest on a small shared CPU, where extra threads spin-wait on busy cores."""
    sitting_minutes: float | None = None
    """Wall-clock minutes this invocation may run; when they are up, the stage in progress checkpoints and the
    command stops, and running it again continues exactly where it stopped. None: run to the end."""


def export_model(
    cfg: TrainBuiltinConfig, unet, text_encoder, vae, scaling_factor: float, extra: dict | None = None
) -> Path:
    """Write the trained parts as a ``StableDiffusionPipeline`` folder at ``cfg.output_dir``, atomically.

    Args:
        cfg: The run (sizes and output folder).
        unet: Trained UNet.
        text_encoder: Trained text encoder.
        vae: Trained autoencoder.
        scaling_factor: Latent scaling factor, stored in the VAE config where diffusers reads it.
        extra: Facts about the run recorded in ``training.json`` next to the weights.
    """
    vae.register_to_config(scaling_factor=scaling_factor)

    def write(tmp: Path) -> None:
        write_tokenizer(tmp / "tokenizer", cfg.model.words, cfg.model.max_length)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        build_scheduler(cfg.model).save_pretrained(tmp / "scheduler")
        (tmp / "model_index.json").write_text(json.dumps(model_index(cfg.model), indent=2) + "\n")
        (tmp / "training.json").write_text(json.dumps(extra or {}, indent=2, default=str) + "\n")

    return atomic_write_folder(Path(cfg.output_dir), write)


def load_training_set(cfg: TrainBuiltinConfig, console: Console, sitting: Sitting | None = None) -> HeadImages:
    """Render (or read from the cache) the training images."""
    t0 = time.monotonic()
    data = build_dataset(
        cfg.data,
        Path(cfg.work_dir) / "data_train",
        on_shard=lambda done, total: console.log(f"renders: shard {done}/{total}"),
        sitting=sitting,
    )
    console.log(f"{len(data)} training images ({(time.monotonic() - t0) / 60:.1f} min)")
    return data


def training_device(name: str) -> torch.device:
    """The device ``TrainBuiltinConfig.device`` names ("auto": the GPU when torch sees one, else the CPU).

    Raises:
        ValueError: A CUDA device is asked for and torch sees none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA GPU here ({torch.__version__}); use --device cpu.")
    return device


def machine_facts(device: torch.device | None = None) -> dict:
    """Where a run trains (recorded in ``training.json``): the CPU, its cores and load, the GPU if one trains,
    torch's version."""
    device = device or torch.device("cpu")
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }


def train_builtin(cfg: TrainBuiltinConfig, console: Console | None = None, sitting: Sitting | None = None) -> Path:
    """Run every stage (each resumes from ``cfg.work_dir``) and write the model folder.

    Args:
        cfg: The run.
        console: Where progress goes (default: a new console).
        sitting: The deadline of this invocation (default: ``cfg.sitting_minutes`` from now). When it passes,
            the stage in progress checkpoints and :class:`~avatarstudio_ns.builtin.sitting.SittingOver` is
            raised; nothing is exported.

    Returns:
        The written model folder.
    """
    console = console or Console()
    sitting = sitting or Sitting(cfg.sitting_minutes)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    device = training_device(cfg.device)
    record = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_facts(device)}
    t0 = time.monotonic()
    try:
        with torch_threads(cfg.threads):
            out = _train_builtin(cfg, console, sitting, record, device)
    except SittingOver as stop:
        _log_sitting(work, {**record, "minutes": (time.monotonic() - t0) / 60.0, "stopped": str(stop)})
        raise
    _log_sitting(work, {**record, "minutes": (time.monotonic() - t0) / 60.0, "stopped": None})
    return out


def _log_sitting(work: Path, record: dict) -> None:
    """Add one invocation's record to ``work/sittings.jsonl``, one line per sitting.

    The file is rewritten whole under a temporary name, then renamed: an append cut by a kill left a line without its
    end, and the next sitting's record, appended to that line, was lost with it.
    """
    path = work / "sittings.jsonl"
    text = path.read_text() if path.exists() else ""
    text = text[: text.rfind("\n") + 1]  # without a line cut by a kill during an append (before this was atomic)
    atomic_write_text(path, text + json.dumps(record, default=str) + "\n")


def read_sittings(work: Path) -> list[dict]:
    """The records of the earlier invocations of a run (a line cut short by a kill is skipped)."""
    path = Path(work) / "sittings.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


RUN_LENGTH_FIELDS = {
    "unet": ("steps", "max_minutes", "checkpoint_every", "log_every"),
    "vae": ("checkpoint_every", "log_every"),
}
"""Fields that do not change the weights trained so far: the UNet's length (with a constant learning rate after the
warm-up a longer run continues the same one; a cosine schedule's length is kept, as it sets every step's rate) and
how often a stage checkpoints and logs."""


SETTINGS_ADDED_LATER: dict[str, object] = {
    "model.zero_terminal_snr": False,
    "vae.init_from": None,
    "unet.init_from": None,
    "unet.part_weight": 0.0,
    "unet.weighted_parts": ["eyes", "lips", "eyebrows"],
    "unet.eye_region": "iris",
    "unet.captions.only_visible": False,
    "vae.train_encoder": True,
    "unet.lr_schedule": "constant",
    "model.time_embedding_dim": None,
}
"""Settings added after work folders began recording theirs, with the value that a folder recorded before then was
trained with (what the code did before the setting existed; not today's default, which may have changed since)."""


def stage_settings(cfg: TrainBuiltinConfig) -> dict:
    """What decides the weights in a work folder: sizes, VAE and UNet training (but ``RUN_LENGTH_FIELDS``) and the
    seed. The renders have their own check (their cache's fingerprint)."""
    settings = {"model": dataclasses.asdict(cfg.model), "seed": cfg.seed}
    for stage in ("vae", "unet"):
        fields = dataclasses.asdict(getattr(cfg, stage))
        length = set(RUN_LENGTH_FIELDS[stage])
        if fields.get("lr_schedule") == "cosine":
            length.discard("steps")  # the schedule's length sets every step's rate
        settings[stage] = {k: v for k, v in fields.items() if k not in length}
    return json.loads(json.dumps(settings, default=str))


def _flatten(settings: dict, prefix: str = "") -> dict:
    """``{"vae": {"lr": 1}}`` as ``{"vae.lr": 1}``."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_stage_settings(cfg: TrainBuiltinConfig, console: Console) -> None:
    """Records the settings a work folder's stages are trained with; refuses to continue one trained with others.

    Without this, a changed VAE loss (say) found the finished VAE of the old settings and reused it silently.

    Raises:
        ValueError: naming what changed and the fix.
    """
    work = Path(cfg.work_dir)
    record = work / "settings.json"
    settings = stage_settings(cfg)
    if not record.is_file():
        if (work / "vae.ckpt").exists() or (work / "vae").exists():
            console.log(
                f"[yellow]{work} has no record of its settings (made by an older version): its stages are "
                "taken as trained with these.[/yellow]"
            )
        atomic_write_text(record, json.dumps(settings, indent=2) + "\n")
        return
    before = json.loads(record.read_text(encoding="utf-8"))
    if before == settings:
        return
    old, new = _flatten(before), _flatten(settings)
    # A setting added after the record was written: the folder was trained as the code did before it existed.
    old |= {k: SETTINGS_ADDED_LATER[k] for k in new.keys() - old.keys() if k in SETTINGS_ADDED_LATER}
    changed = [
        f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)
    ]
    if not changed:
        atomic_write_text(record, json.dumps(settings, indent=2) + "\n")
        return
    raise ValueError(
        f"{work} was trained with other settings ({'; '.join(changed)}); give another --work-dir (copy its data_train/ "
        "there to keep the renders), or delete its vae*, latents.pt and unet.ckpt to retrain with these."
    )


def _training_record(folder: Path) -> dict:
    """The ``training.json`` of a model folder a stage starts from (with the folder's path), or just the path."""
    path = Path(folder) / "training.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {"folder": str(folder), **record}


def _train_builtin(
    cfg: TrainBuiltinConfig, console: Console, sitting: Sitting, record: dict, device: torch.device
) -> Path:
    work = Path(cfg.work_dir)
    t0 = time.monotonic()
    check_stage_settings(cfg, console)
    data = load_training_set(cfg, console, sitting)
    for needs_labels, option, off in (
        (cfg.unet.part_weight > 0, "--unet.part-weight", "leave it at 0"),
        (cfg.unet.captions.only_visible, "--unet.captions.only-visible", "leave it False"),
    ):
        if needs_labels and data.labels is None:
            raise ValueError(
                f"{option} needs the renders' label maps, which {work / 'data_train'} lacks (rendered by an older "
                f"version): delete it to render the training set again, or {off}."
            )
    images = data.images()
    labels = torch.from_numpy(data.labels) if data.labels is not None else None
    vae = train_vae(images, cfg.model, cfg.vae, work, cfg.seed, console, sitting, labels, device)
    if sitting.over() and not (work / "latents.pt").exists():
        raise sitting.stop("the VAE is trained; the latents are next")
    latents = encode_latents(vae, images, work, console)
    del images
    console.log(f"latent scaling factor {latents['scaling_factor']:.4f}")

    write_tokenizer(work / "tokenizer", cfg.model.words, cfg.model.max_length)
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    vocab, _ = build_vocab(cfg.model.words)
    torch.manual_seed(cfg.seed + 3)
    text_encoder = build_text_encoder(cfg.model, len(vocab), vocab[BOS_TOKEN], vocab[EOS_TOKEN])
    unet = build_unet(cfg.model)
    scheduler = build_scheduler(cfg.model)
    steps = train_unet(
        unet, text_encoder, tokenizer, scheduler, latents, data, cfg.unet, work, cfg.seed, console, sitting, device
    )

    facts = {
        "images": len(data),
        "unet_steps": steps,
        "unet_batch_size": cfg.unet.batch_size,
        "vae_steps": cfg.vae.steps,
        "latent_scaling_factor": latents["scaling_factor"],
        "heldout_pairs": [list(p) for p in cfg.data.heldout_pairs],
        # What prompts may say to this model (the loader warns about other words).
        "caption_words": list(caption_vocabulary()),
        "machine": record["machine"],
        # Where and how long each invocation trained; this one is the last, still running while exporting.
        "sittings": [*read_sittings(work), {**record, "minutes": (time.monotonic() - t0) / 60.0}],
        "config": dataclasses.asdict(cfg),
        # A model continued from another folder carries that folder's record, so the shipped model's whole lineage
        # (where and how each part was trained) stays in its own training.json.
        "started_from": {
            stage: _training_record(init)
            for stage, init in (("vae", cfg.vae.init_from), ("unet", cfg.unet.init_from))
            if init is not None
        },
    }
    # The folder is the same whichever device trained it.
    unet, text_encoder, vae = unet.cpu(), text_encoder.cpu(), vae.cpu()
    out = export_model(cfg, unet, text_encoder, vae, float(latents["scaling_factor"]), facts)
    console.log(f"[green]Wrote {out}[/green] ({(time.monotonic() - t0) / 60:.1f} min this run)")
    return out
