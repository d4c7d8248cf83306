"""The seven long commands of issue 15 as the fault suite runs them (:mod:`avatarstudio_ns.scripts.faults`): their
arguments at small sizes, how each is rerun after a kill, which of its writes are checkpoints and caches, and the
inputs they start from.

Used by ``tests/test_faults.py`` (the default sizes) and ``benchmarks/fault_suite.py`` (``Sizes.full()``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avatarstudio_ns.scripts.faults import Command, Runner


@dataclass(frozen=True)
class Sizes:
    """How big the commands run: the test suite's tiny defaults, or :meth:`full` (the benchmark's)."""

    cameras: int = 4
    """Cameras of the synthetic captures (one held out)."""
    frames: int = 2
    """Frames of the synthetic captures."""
    resolution: int = 24
    """Image side of the synthetic captures, pixels."""
    recon_steps: int = 40
    """ns-train recon iterations; a checkpoint every ``save_every``."""
    save_every: int = 10
    """Steps between the ns-train recon's checkpoints."""
    personalization_steps: int = 6
    """Steps of ``avatarstudio personalize``; its state is saved every 2."""
    edit_steps: int = 6
    """ns-train edit iterations; a checkpoint every 2."""
    demo_recon_steps: int = 12
    """The demo saves a run's checkpoint every max(100, steps // 10) steps: below 100, only at the end."""
    demo_edit_steps: int = 4
    """The demo's edit iterations."""
    ablate_methods: tuple[str, ...] = ("vt-sds", "dataset-update")
    """The methods the ablation trains (VT-SDS, and the SDEdit + fit baseline, whose guidance has a state of its
    own)."""
    ablate_steps: int = 2
    """Edit iterations of each method; a run saves its checkpoint every max(100, steps // 10) steps."""
    builtin_vae_steps: int = 3
    """train-builtin's autoencoder steps; a checkpoint every 2."""
    builtin_unet_steps: int = 4
    """train-builtin's UNet steps; a checkpoint every 2."""

    @classmethod
    def full(cls) -> Sizes:
        """Longer runs, more checkpoints to be killed at and resumed from (the demo's recon and the ablation's runs
        save one at step 100, so they resume mid-run)."""
        return cls(
            frames=3,
            recon_steps=120,
            personalization_steps=16,
            edit_steps=16,
            demo_recon_steps=200,
            demo_edit_steps=6,
            ablate_methods=("vt-sds", "dataset-update"),
            ablate_steps=200,
            builtin_vae_steps=8,
            builtin_unet_steps=12,
        )


@dataclass(frozen=True)
class Inputs:
    """What the commands under test start from (see :func:`make_inputs`)."""

    capture: Path
    """A tiny synthetic capture."""
    recon: Path
    """An ``avatarstudio-recon-cpu`` run of it (config.yml, nerfstudio_models)."""
    model: Path
    """A tiny random diffusion model folder."""
    prompts: Path
    """A prompt set of one prompt."""


def _recon_args(data: Path, output: Path, steps: int, save_every: int) -> list[str]:
    return [
        "avatarstudio-recon-cpu",
        *("--data", str(data), "--output-dir", str(output), "--experiment-name", "head", "--timestamp", "run"),
        *("--max-num-iterations", str(steps), "--steps-per-save", str(save_every)),
        *("--pipeline.datamanager.train-num-rays-per-batch", "256"),
        *("--logging.local-writer.enable", "False", "--vis", "tensorboard"),
    ]


def make_inputs(folder: Path, run: Runner, sizes: Sizes = Sizes(), model: Path | None = None) -> Inputs:
    """Renders the capture, reconstructs it with ``ns-train`` (through ``run``) and writes the tiny model and the
    prompt set, under ``folder``.

    Args:
        folder: Where they go (created).
        run: Starts the recon.
        sizes: The capture's size and the recon's length.
        model: A tiny diffusion model folder to use instead of writing one.
    """
    from avatarstudio_ns.builtin.small_model import SmallModelConfig, write_small_model
    from avatarstudio_ns.data.synth import CaptureConfig, render_capture
    from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, PromptSet, save_prompt_set

    folder = Path(folder)
    capture = render_capture(
        CaptureConfig(
            output=folder / "capture",
            num_cameras=sizes.cameras,
            num_frames=sizes.frames,
            resolution=sizes.resolution,
            progress=False,
        )
    )
    if model is None:
        model = write_small_model(folder / "model", SmallModelConfig.tiny())
    prompts = save_prompt_set(
        PromptSet(prompts=(DEFAULT_PROMPT_SET.find("photo of a person with blue hair"),)), folder / "prompts.yaml"
    )
    recon_root = folder / "recon"
    args = _recon_args(capture, recon_root / "outputs", sizes.recon_steps, sizes.recon_steps)
    result = run("ns-train", args, recon_root, folder / "recon.log", folder / "recon.trace")
    if result.returncode != 0:
        raise RuntimeError(f"The inputs' recon failed ({result.returncode}):\n{result.tail()}")
    return Inputs(capture, recon_root / "outputs" / "head" / "avatarstudio-recon-cpu" / "run", Path(model), prompts)


def ns_train_resume(run_dir: Callable[[Path], Path]) -> Callable[[Path, list[str]], list[str]]:
    """The rerun of an ns-train command after a kill, as a user resumes one (the checkpoint's full-disk message says
    it): its own checkpoints as --load-dir, and the iterations left to the first start's total (ns-train runs
    --max-num-iterations more from the checkpoint's step). Without a checkpoint yet, the same command.

    Args:
        run_dir: The run folder of the command, given the folder the suite runs it in.
    """

    def rerun(folder: Path, args: list[str]) -> list[str]:
        checkpoints = run_dir(folder) / "nerfstudio_models"
        saved = sorted(int(p.stem.split("-")[1]) for p in checkpoints.glob("step-*.ckpt"))
        if not saved:
            return list(args)
        args = list(args)
        index = args.index("--max-num-iterations")
        args[index + 1] = str(int(args[index + 1]) - saved[-1] - 1)
        if "--load-dir" in args:
            args[args.index("--load-dir") + 1] = str(checkpoints)
        else:
            args += ["--load-dir", str(checkpoints)]
        return args

    return rerun


def _personalization_args(prefix: str, steps: int, flag_style: Literal["avatarstudio", "ns-train"]) -> list[str]:
    """The personalisation at the suite's size: LoRA rank 4 at 32 px, its state saved every 2 steps, 2 class images
    of 2 sampler steps."""
    args = [
        *(f"{prefix}.steps", str(steps), f"{prefix}.save-every", "2", f"{prefix}.resolution", "32"),
        *(f"{prefix}.lora-rank", "4", f"{prefix}.num-class-images", "2", f"{prefix}.class-image-steps", "2"),
    ]
    # ns-train's booleans take a value; the avatarstudio commands' are flags.
    return args + ([f"{prefix}.progress", "False"] if flag_style == "ns-train" else [f"{prefix}.no-progress"])


def suite_commands(inputs: Inputs, sizes: Sizes = Sizes()) -> list[Command]:
    """The seven long commands of issue 15 at ``sizes``, each with its chain of faults.

    Plans: a fault on a cache write (class images, keyframes, renders, shards), one at a moment, one on a checkpoint
    write, in an order that leaves each something still to do. ns-train commands resume from their own checkpoints
    (:func:`ns_train_resume`); the ``avatarstudio`` commands resume by themselves, so their rerun is the same command.
    """
    s = sizes
    model = str(inputs.model)
    recon_dir = lambda f: f / "outputs" / "head" / "avatarstudio-recon-cpu" / "run"  # noqa: E731
    edit_dir = lambda f: f / "outputs" / "head" / "avatarstudio-edit-fast" / "run"  # noqa: E731
    nerfstudio_checkpoints = ("*.ckpt",)

    def synth(f: Path) -> list[str]:
        size = ("--num-cameras", str(s.cameras), "--num-frames", str(s.frames), "--resolution", str(s.resolution))
        return ["synth", "--output", str(f / "capture"), *size, "--no-progress"]

    def recon(f: Path) -> list[str]:
        return _recon_args(inputs.capture, f / "outputs", s.recon_steps, s.save_every)

    def personalize(f: Path) -> list[str]:
        where = ("--load-config", str(inputs.recon / "config.yml"), "--output", str(f / "personal"))
        return [
            "personalize",
            *where,
            *("--base-model", model, "--device", "cpu", "--keyframes.n-time", "1"),
            *_personalization_args("--personalization", s.personalization_steps, "avatarstudio"),
        ]

    def edit(f: Path) -> list[str]:
        return [
            "avatarstudio-edit-fast",
            *("--data", str(inputs.capture), "--load-dir", str(inputs.recon / "nerfstudio_models")),
            *("--output-dir", str(f / "outputs"), "--experiment-name", "head", "--timestamp", "run"),
            *("--max-num-iterations", str(s.edit_steps), "--steps-per-save", "2"),
            *("--vis", "tensorboard", "--logging.local-writer.enable", "False"),
            *("--pipeline.datamanager.render-resolution", str(s.resolution), "--pipeline.keyframes.n-time", "1"),
            *("--pipeline.guidance.base-model", model, "--pipeline.guidance.guidance-resolution", "32"),
            *("--pipeline.guidance.personalization-dir", str(f / "personal")),
            *_personalization_args("--pipeline.personalization", 4, "ns-train"),
        ]

    def demo(f: Path) -> list[str]:
        size = ("--num-cameras", str(s.cameras), "--num-frames", str(s.frames), "--resolution", str(s.resolution))
        steps = ("--recon-steps", str(s.demo_recon_steps), "--edit-steps", str(s.demo_edit_steps))
        return [
            "demo",
            "--output",
            str(f / "demo"),
            "--base-model",
            model,
            *size,
            *steps,
            "--personalization-steps",
            "2",
        ]

    def ablate(f: Path) -> list[str]:
        return [
            "ablate",
            *("--recon", str(inputs.recon / "config.yml"), "--prompts", str(inputs.prompts)),
            *("--output", str(f / "ablation"), "--methods", *s.ablate_methods, "--base-model", model),
            *("--steps", str(s.ablate_steps), "--personalization-steps", "2", "--video-frames", "2"),
            *("--settings.num-train-cameras", "1", "--settings.timestep-stride", "2", "--settings.clip-model", "None"),
        ]

    def train_builtin(f: Path) -> list[str]:
        tiny = ("--model.resolution", "32", "--model.vae-channels", "8", "16", "--model.unet-channels", "16", "32")
        tiny += ("--model.unet-attention", "True", "False", "--model.attention-head-dim", "8")
        tiny += ("--model.norm-num-groups", "4", "--model.text-hidden-size", "32", "--model.text-layers", "1")
        tiny += ("--model.text-heads", "2")
        data = ("--data.num-identities", "4", "--data.views-per-identity", "2", "--data.resolution", "32")
        data += ("--data.identities-per-shard", "2", "--data.workers", "1")
        vae = ("--vae.steps", str(s.builtin_vae_steps), "--vae.full-image-steps", "1", "--vae.crop", "16")
        vae += ("--vae.batch-size", "2", "--vae.checkpoint-every", "2", "--vae.log-every", "0")
        unet = ("--unet.steps", str(s.builtin_unet_steps), "--unet.batch-size", "4", "--unet.warmup-steps", "2")
        unet += ("--unet.checkpoint-every", "2", "--unet.log-every", "0")
        evaluation = ("--evaluation.eval-identities", "2", "--evaluation.samples-per-prompt", "1")
        evaluation += ("--evaluation.inference-steps", "2", "--evaluation.probe.width", "4")
        evaluation += ("--evaluation.probe.steps", "2", "--evaluation.probe.batch-size", "4")
        evaluation += ("--evaluation.probe.log-every", "0", "--evaluation.grid-path", str(f / "grid.png"))
        where = ("--work-dir", str(f / "work"), "--output-dir", str(f / "model"))
        return ["train-builtin", *where, *data, *tiny, *vae, *unet, *evaluation]

    return [
        Command(
            "avatarstudio synth",
            "avatarstudio",
            synth,
            plan=("write", "time", "write"),
            caches=("capture/*",),
            resumes="renders again; a folder is a capture once transforms_train.json (written last) is in it",
        ),
        Command(
            "ns-train avatarstudio-recon-cpu",
            "ns-train",
            recon,
            plan=("checkpoint", "time", "write"),
            rerun=ns_train_resume(recon_dir),
            checkpoints=nerfstudio_checkpoints,
            ignore=("*/config.yml",),  # the resumed start records its --load-dir and iterations
            resumes="--load-dir <run>/nerfstudio_models resumes from the newest checkpoint",
        ),
        Command(
            "avatarstudio personalize",
            "avatarstudio",
            personalize,
            plan=("cache", "time", "checkpoint"),
            checkpoints=("*train_state.pt*",),
            caches=("personal/*",),
            resumes="reruns resume from its saved state (train_state.pt) or reuse a finished folder",
        ),
        Command(
            "ns-train avatarstudio-edit-fast",
            "ns-train",
            edit,
            plan=("cache", "time", "checkpoint"),
            rerun=ns_train_resume(edit_dir),
            checkpoints=nerfstudio_checkpoints,
            caches=("personal/*",),
            ignore=("*/config.yml",),
            resumes="passing an interrupted edit's own nerfstudio_models resumes it",
        ),
        Command(
            "avatarstudio demo",
            "avatarstudio",
            demo,
            plan=("cache", "time", "checkpoint"),
            checkpoints=nerfstudio_checkpoints,
            caches=("demo/capture/*", "demo/personalization*"),
            resumes="every stage is reused when the demo runs again, so an interrupted demo continues where it stopped",
        ),
        Command(
            "avatarstudio ablate",
            "avatarstudio",
            ablate,
            plan=("cache", "time", "checkpoint"),
            checkpoints=nerfstudio_checkpoints,
            caches=("ablation/personalizations/*",),
            resumes="finished runs are reused, interrupted ones resumed",
        ),
        Command(
            "avatarstudio train-builtin",
            "avatarstudio",
            train_builtin,
            plan=("cache", "time", "checkpoint"),
            checkpoints=("work/*.ckpt*",),
            caches=("work/data_*", "work/latents.pt*", "work/vae/*", "work/.vae.*"),
            # Wall-clock records: the sittings' minutes and machine, the UNet checkpoint's elapsed time.
            ignore=("work/sittings.jsonl", "model/training.json"),
            volatile=("elapsed",),
            resumes="re-running with the same --work-dir resumes (from the last checkpoint after a kill)",
        ),
    ]
