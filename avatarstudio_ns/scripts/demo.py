"""The whole pipeline on the built-in synthetic head: capture, recon, personalise + edit, results.

Each stage writes into its own folder under the demo's output and is skipped when its result is already
there, so an interrupted demo continues where it stopped (nerfstudio runs resume from their last checkpoint).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np
import torch
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import Model
from rich.console import Console
from rich.panel import Panel

from avatarstudio_ns.atomic import atomic_save, atomic_write_text
from avatarstudio_ns.data.frontal import frontal_image_index
from avatarstudio_ns.data.synth import CaptureConfig, render_capture
from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    collect_views,
    evaluate,
    load_pipeline,
    pipeline_outputs,
    write_report,
)
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET
from avatarstudio_ns.eval.renders import image_grid, orbit_path, render_rgb, side_by_side, write_video
from avatarstudio_ns.scripts.runs import (
    EDIT_BEHAVIOUR,
    base_model_weights,
    check_settings,
    edit_steps,
    finished,
    run_dir,
    settings_digest,
    train_run,
)
from method_configs.edit import avatarstudio_edit_fast
from method_configs.recon import avatarstudio_recon_cpu

CONSOLE = Console()


@dataclass
class DemoConfig:
    """Sizes of the demo: small enough for about 20 minutes on 2 CPU cores."""

    output: Path = Path("demo")
    """Folder of everything the demo writes."""
    prompt: Optional[str] = None
    """The edit; None: the fast edit preset's ("photo of a person with blue hair"). The built-in model knows hair
    colours, skin tones and hair styles well, lip colours poorly and eye colours not yet (docs/builtin_model.md)."""
    base_model: str = "builtin"
    """Base diffusion model: builtin, a local diffusers folder or a Hugging Face id."""
    num_cameras: int = 8
    """Cameras of the synthetic rig."""
    num_frames: int = 16
    """Frames of the performance."""
    resolution: int = 64
    """Image side of the capture, in pixels."""
    width: Optional[int] = None
    """Image width of a non-square capture (NeRSemble's exports are portrait, 550 x 802), pixels; None: square."""
    height: Optional[int] = None
    """Image height of a non-square capture, pixels; None: square. The head fills the shorter side."""
    recon_steps: int = 1500
    """Iterations of the recon (avatarstudio-recon-cpu)."""
    edit_steps: Optional[int] = None
    """Iterations of the edit; None: the fast edit preset's own length."""
    identity_loss_mult: Optional[float] = None
    """Weight of the edit's identity loss (renders held to the captured keyframes outside the edit region); None:
    the fast preset's, which serves hair, skin and whole-head prompts alike (an expert option)."""
    personalization_steps: Optional[int] = None
    """Steps of the personalisation fine-tune; None: the fast edit preset's."""
    seed: int = 0
    """Seed of the capture and the training runs."""


def _avatar_settings(config: DemoConfig) -> dict:
    """The settings the capture and the recon are made with (the edit's have their own run folders), including a
    digest of the recon preset, so an avatar made by an older version of the model is not reused."""
    keys = ("num_cameras", "num_frames", "resolution", "recon_steps", "seed")
    settings = {key: getattr(config, key) for key in keys}
    # Only when set, so that square demos made before these options existed are still reused.
    settings |= {key: getattr(config, key) for key in ("width", "height") if getattr(config, key) is not None}
    settings["recon_settings"] = settings_digest(avatarstudio_recon_cpu.config, config.recon_steps)
    return settings


def check_avatar_settings(root: Path, config: DemoConfig) -> None:
    """Records the capture's and recon's settings in a new demo folder; refuses a folder made with other ones.

    Raises:
        ValueError: when ``root`` holds a capture or recon made with other settings, which would be reused.
    """
    if not check_settings(root / "demo.json", _avatar_settings(config), root) and (root / "capture").exists():
        CONSOLE.print(
            f"[yellow]{root} has a capture but no record of its settings (made by an older version): it is "
            "reused as it is; delete the folder if it was made with other settings.[/yellow]"
        )


def check_demo_folder(root: Path) -> None:
    """Refuses an --output that holds something other than a demo: the demo writes, replaces and deletes files by
    fixed names there (grid.png, scores.json, ...).

    Raises:
        ValueError: naming the folder, some of what it holds, and the fix.
    """
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"--output {root} is a file; give --output a new or empty folder.")
    # A demo.json says an earlier demo made the folder; a capture without one, a demo of an older version.
    if (root / "demo.json").is_file() or (root / "capture" / "transforms_train.json").is_file():
        return
    held = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if held:
        listed = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise ValueError(
            f"--output {root} holds other files ({listed}) and no demo (no demo.json); give --output a new or empty "
            "folder, or one an earlier demo wrote."
        )


def demo_prompt(config: DemoConfig) -> str:
    """The prompt the demo edits with: ``--prompt``, or the fast edit preset's."""
    return config.prompt or avatarstudio_edit_fast.config.pipeline.model.prompt


def demo_edit_config(config: DemoConfig, root: Path, base_weights: str) -> tuple[TrainerConfig, int]:
    """The fast edit preset with the demo's prompt, base model and personalisation folder, and the edit's length; the
    preset is the single source of whatever the demo leaves unset (None).

    Args:
        config: The demo's options.
        root: The demo folder.
        base_weights: :func:`~avatarstudio_ns.scripts.runs.base_model_weights` of the base model.
    """
    edit = copy.deepcopy(avatarstudio_edit_fast.config)
    edit.machine.seed = config.seed
    edit.pipeline.model.prompt = demo_prompt(config)
    edit.pipeline.guidance.base_model = config.base_model
    # One personalisation folder per base model's weights: another model's would be refused (the built-in model's
    # name stays the same when a new version ships).
    edit.pipeline.guidance.personalization_dir = root / f"personalization-{base_weights}"
    if config.personalization_steps is not None:
        edit.pipeline.personalization.steps = config.personalization_steps
    if config.identity_loss_mult is not None:
        edit.pipeline.model.identity_loss_mult = config.identity_loss_mult
    return edit, edit_steps("fast", config.edit_steps)


def render_grid(original: Model, edited: Model, dataset: InputDataset) -> np.ndarray:
    """An image grid: up to 4 cameras across, the original at the first, middle and last frame, then the edit."""
    metadata = dataset.metadata
    all_cameras = sorted(set(metadata["camera_indices"].tolist()))
    camera_ids = all_cameras[:: max(1, len(all_cameras) // 4)][:4]
    timesteps = sorted(set(metadata["timestep_indices"].tolist()))
    times = [timesteps[0], timesteps[len(timesteps) // 2], timesteps[-1]]
    rows = []
    for model in (original, edited):
        for t in times:
            index = [
                int(torch.nonzero((metadata["camera_indices"] == c) & (metadata["timestep_indices"] == t))[0])
                for c in camera_ids
            ]
            rows.append(render_rgb(model, dataset.cameras[torch.tensor(index)]))
    return image_grid(rows)


def run_demo(config: DemoConfig) -> dict:
    """Runs every stage that has not finished yet and writes the results; returns the edit's scores (empty when the
    built-in prompt set has no measure for the prompt)."""
    if config.prompt is not None and not config.prompt.strip():
        # Not the preset's prompt in its place: the demo would edit something nobody asked for.
        raise ValueError(
            '--prompt is empty; pass what the avatar should look like, e.g. --prompt "photo of a person '
            'with blue hair", or leave --prompt out for that one.'
        )
    root = config.output.expanduser()
    check_demo_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    check_avatar_settings(root, config)
    # Fails before hours of work if the diffusion model cannot be loaded, and warns of words it would not follow.
    base_weights = base_model_weights(config.base_model, [demo_prompt(config)])
    edit, steps = demo_edit_config(config, root, base_weights)
    text = edit.pipeline.model.prompt
    try:
        prompt = DEFAULT_PROMPT_SET.find(text)
    except KeyError:
        prompt = None
        CONSOLE.print(
            f"[yellow]The built-in prompt set has no measure for {text!r}: the demo edits and renders it "
            "but writes no scores (avatarstudio eval --prompt-set takes your own set).[/yellow]"
        )
    torch.manual_seed(config.seed)

    capture = root / "capture"
    CONSOLE.rule("1/4 synthetic capture")
    if (capture / "transforms_train.json").exists():
        CONSOLE.print(f"Reusing the capture in {capture}")
    else:
        render_capture(
            CaptureConfig(
                output=capture,
                num_cameras=config.num_cameras,
                num_frames=config.num_frames,
                resolution=config.resolution,
                width=config.width,
                height=config.height,
                seed=config.seed,
            )
        )

    CONSOLE.rule("2/4 reconstruction (avatarstudio-recon-cpu)")
    recon_run = run_dir(root, "avatar", "avatarstudio-recon-cpu", "demo")
    if finished(recon_run, config.recon_steps):
        CONSOLE.print(f"Reusing the avatar in {recon_run}")
    else:
        recon = copy.deepcopy(avatarstudio_recon_cpu.config)
        recon.machine.seed = config.seed
        train_run(recon, capture, root, config.recon_steps, load_dir=None)

    CONSOLE.rule("3/4 personalisation + VT-SDS edit (avatarstudio-edit-fast)")
    # One run per prompt, edit settings, edit behaviour and base model weights: another prompt, a changed preset, a
    # changed edit or a new version of the built-in model never reuses an old edit.
    name = f"demo-{settings_digest(edit, steps)}-b{EDIT_BEHAVIOUR}-{base_weights}"
    edit_run = run_dir(root, "avatar", "avatarstudio-edit-fast", name)
    if finished(edit_run, steps):
        CONSOLE.print(f"Reusing the edit in {edit_run}")
    else:
        train_run(edit, capture, root, steps, load_dir=recon_run / "nerfstudio_models", name=edit_run.name)

    CONSOLE.rule("4/4 results")
    original = load_pipeline(recon_run / "config.yml")
    edited = load_pipeline(edit_run / "config.yml")
    dataset = original.datamanager.train_dataset
    # Renders dominate this stage on a CPU: a short swing at the capture's resolution.
    path = orbit_path(dataset.cameras, frontal_image_index(dataset), 24)
    with CONSOLE.status("Rendering the side-by-side video..."):
        frames = side_by_side(render_rgb(original.model, path), render_rgb(edited.model, path))
    video = write_video(root / "side_by_side.mp4", frames, fps=12)
    gif = write_video(root / "side_by_side.gif", frames, fps=8)

    grid_path = root / "grid.png"
    with CONSOLE.status("Rendering the grid..."):
        grid = render_grid(original.model, edited.model, dataset)
    atomic_save(grid_path, lambda tmp: iio.imwrite(tmp, grid))

    report: dict = {}
    scores = "none (the prompt is not in the built-in prompt set)"
    if prompt is not None:
        train, val = pipeline_outputs(original)
        settings = EvalSettings(num_train_cameras=2, timestep_stride=max(1, config.num_frames // 4), clip_model=None)
        views = collect_views(train, val, settings)
        report = evaluate(original.model, [(prompt, edited.model, str(edit_run))], views, DEFAULT_PROMPT_SET, settings)
        json_path, md_path = write_report(report, root / "scores.json")
        scores = str(md_path)
    else:
        # The grid and videos now show this prompt: scores of an earlier prompt would be read as this one's.
        for stale in (root / "scores.json", root / "scores.md"):
            stale.unlink(missing_ok=True)
    summary = {"prompt": text, "edit": str(edit_run), "scores": scores}
    atomic_write_text(root / "summary.json", json.dumps(summary) + "\n")
    CONSOLE.print(
        Panel(
            f"Video: {video}\nGIF: {gif}\nGrid (rows: original at 3 times, then edited): {grid_path}\n"
            f"Scores: {scores}\n\nOpen the edited avatar in the viewer (time slider included):\n"
            f"  ns-viewer --load-config {edit_run / 'config.yml'}",
            title="AvatarStudio demo",
        )
    )
    return report


@dataclass
class DemoCommand(DemoConfig):
    """Synthetic capture -> recon -> personalise -> VT-SDS edit -> side-by-side video, image grid and scores.

    Re-running reuses every finished stage, so an interrupted demo continues where it stopped.
    """

    def main(self) -> None:
        """Runs the demo."""
        run_demo(self)
