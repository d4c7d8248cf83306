"""``avatarstudio personalize``: choose keyframes of a reconstruction and personalise the diffusion model on them.

A thin layer: it reads the recon's nerfstudio config (``config.yml`` -> TrainerConfig), takes the capture
from the dataparser config inside it and the per-frame codes from its checkpoint, picks the keyframes, and
hands keyframes and images to :func:`avatarstudio_ns.guidance.personalize.personalize`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from avatarstudio_ns.data.keyframes import (
    Keyframe,
    KeyframeSelectionConfig,
    frame_codes_from_checkpoint,
    select_keyframes,
)
from avatarstudio_ns.guidance.loading import DEFAULT_BASE_MODEL


def load_trainer_config(config_path: Path):
    """The TrainerConfig saved by ``ns-train`` (nerfstudio's own loading, as ``ns-viewer`` does it)."""
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    config = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    if not isinstance(config, TrainerConfig):
        raise ValueError(f"{config_path} is not a nerfstudio config.yml written by ns-train.")
    return config


def latest_checkpoint(config, config_path: Path) -> Path:
    """The newest ``step-*.ckpt`` of a run: next to the config.yml, else where the config says."""
    candidates = [Path(config_path).parent / config.relative_model_dir, config.get_checkpoint_dir()]
    for folder in candidates:
        ckpts = sorted(Path(folder).glob("step-*.ckpt"), key=lambda p: int(p.stem.split("-")[-1]))
        if ckpts:
            return ckpts[-1]
    raise FileNotFoundError(f"No step-*.ckpt checkpoint found in {', '.join(str(c) for c in candidates)}.")


def _read_rgb(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    array = np.asarray(Image.open(path)).astype(np.float32) / 255.0
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    alpha = array[..., 3:4] if array.shape[-1] == 4 else None
    return array[..., :3], alpha


def captured_keyframe_image(
    image_path: Path, mask_path: Path | None, background: Float[Tensor, "3"] | None
) -> Float[Tensor, "3 h w"]:
    """A captured image with the head masked onto the rig backdrop (its alpha or foreground mask, when known)."""
    rgb, alpha = _read_rgb(image_path)
    if mask_path is not None:
        from PIL import Image

        mask = np.asarray(Image.open(mask_path).convert("L").resize(rgb.shape[1::-1])).astype(np.float32) / 255.0
        alpha = mask[..., None]
    if alpha is not None and background is not None:
        rgb = rgb * alpha + background.numpy().reshape(1, 1, 3) * (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()


def keyframes_from_recon(
    config_path: Path,
    selection: KeyframeSelectionConfig,
    checkpoint: Path | None = None,
    image_source: Literal["captured", "render"] = "captured",
) -> tuple[list[Keyframe], list[Tensor]]:
    """Keyframes of a reconstruction and one image of each.

    Args:
        config_path: The recon run's ``config.yml``.
        selection: Keyframe selection settings.
        checkpoint: Recon checkpoint with the per-frame codes; default: the run's newest.
        image_source: ``captured`` images masked onto the backdrop, or the recon's ``render`` of each keyframe.
    """
    config = load_trainer_config(config_path)
    datamanager = config.pipeline.datamanager
    dataparser_config = datamanager.dataparser
    if getattr(datamanager, "data", None) is not None:
        dataparser_config.data = datamanager.data
    outputs = dataparser_config.setup().get_dataparser_outputs("train")
    meta = outputs.metadata
    cameras = [int(c) for c in meta["camera_indices"]]
    timesteps = [int(t) for t in meta["timestep_indices"]]
    index_of = {(c, t): i for i, (c, t) in enumerate(zip(cameras, timesteps, strict=True))}

    checkpoint = checkpoint or latest_checkpoint(config, config_path)
    codes = frame_codes_from_checkpoint(checkpoint) if selection.time_aware else None
    # The recon keeps one code per timestep index (code k at time k / (T - 1)), so row j is timestep j.
    code_timesteps = list(range(codes.shape[0])) if codes is not None else None
    frontal = selection.frontal_camera if selection.frontal_camera is not None else meta.get("frontal_camera_index")
    if selection.time_aware and frontal is not None and frontal not in cameras:
        frontal = _nearest_train_camera(dataparser_config, outputs, frontal)
    keyframes = select_keyframes(
        codes, index_of.keys(), frontal, replace(selection, frontal_camera=None), code_timesteps
    )

    if image_source == "render":
        return keyframes, _render_keyframes(
            config_path, [index_of[(k.camera_index, k.timestep_index)] for k in keyframes]
        )
    masks = meta.get("fg_mask_filenames")
    background = meta.get("background_color")
    images = []
    for k in keyframes:
        i = index_of[(k.camera_index, k.timestep_index)]
        images.append(captured_keyframe_image(outputs.image_filenames[i], masks[i] if masks else None, background))
    return keyframes, images


def _nearest_train_camera(dataparser_config, train_outputs, frontal: int) -> int:
    """The training camera looking most nearly the way ``frontal`` does (the frontal camera is often held out)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    def directions(outputs) -> Tensor:
        return -outputs.cameras.camera_to_worlds[:, :3, 2]  # OpenGL cameras look down -z

    for split in ("val", "test"):
        outputs = dataparser_config.setup().get_dataparser_outputs(split)
        held = [i for i, c in enumerate(outputs.metadata["camera_indices"]) if int(c) == frontal]
        if held:
            scores = directions(train_outputs) @ directions(outputs)[held[0]]
            nearest = int(train_outputs.metadata["camera_indices"][int(scores.argmax())])
            CONSOLE.print(f"Frontal camera {frontal} is held out of training; using camera {nearest}, its nearest.")
            return nearest
    raise ValueError(f"Frontal camera {frontal} is in no split of the capture; pass --frontal-camera.")


def _render_keyframes(config_path: Path, image_indices: list[int]) -> list[Tensor]:
    """The recon's renders of the given train images (full resolution)."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(Path(config_path), test_mode="val")
    cameras = pipeline.datamanager.train_dataset.cameras
    images = []
    with torch.no_grad():
        for i in image_indices:
            camera = cameras[i : i + 1].to(pipeline.device)
            rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"]
            images.append(rgb.clamp(0, 1).permute(2, 0, 1).float().cpu())
    return images


@dataclass
class PersonalizeCommand:
    """Personalise a diffusion model on the keyframes of a reconstructed avatar (METHOD sections 2-3)."""

    load_config: Path
    """The recon run's config.yml (outputs/.../avatarstudio-recon/<timestamp>/config.yml)."""
    output: Path = Path("outputs/personalization")
    """Personalisation folder (weights, keyframes.json, personalization.json); reruns resume or reuse it."""
    base_model: str = DEFAULT_BASE_MODEL
    """Base diffusion model: a Hugging Face id, a local diffusers folder, or builtin."""
    checkpoint: Path | None = None
    """Recon checkpoint holding the per-frame codes; default: the run's newest."""
    steps: int = 1000
    """Fine-tuning steps (the paper: 28 000, full fine-tune)."""
    learning_rate: float | None = None
    """Adam learning rate; default 1e-4 (lora) or 5e-5 (full, the paper)."""
    batch_size: int = 3
    """Keyframes per batch (shared noise inside a batch)."""
    resolution: int | None = None
    """Training resolution; default: the base model's."""
    mode: Literal["lora", "full"] = "lora"
    """lora (small, default) or full UNet fine-tune (the paper)."""
    lora_rank: int = 8
    """LoRA rank."""
    class_noun: Literal["man", "woman", "person"] = "person"
    """Class noun of the prompts."""
    prior_weight: float = 1.0
    """Prior preservation weight; 0 turns it off."""
    num_class_images: int = 50
    """Class images generated by the base model for the prior."""
    class_image_dir: Path | None = None
    """Class image cache; default: <output>/class_images."""
    n_time: int = 6
    """Frontal frames added to the first-frame cameras."""
    min_gap: int = 1
    """Frames within this many of a chosen frame are near-duplicates."""
    time_aware: bool = True
    """Add deviant frontal frames; off: cameras of the first frame only (ablation)."""
    frontal_camera: int | None = None
    """Frontal camera; default: the capture's frontal_camera_index."""
    shared_identifier: bool = False
    """One identifier for all keyframes (DreamBooth ablation)."""
    image_source: Literal["captured", "render"] = "captured"
    """Train on captured images masked onto the backdrop, or on the recon's renders."""
    seed: int = 0
    """Seed of identifiers, batches and noise."""
    device: str = "auto"
    """cuda, cpu, or auto (cuda when available)."""
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Compute dtype of the frozen model; auto: fp16 on CUDA, fp32 on the CPU."""

    def main(self) -> None:
        """Select keyframes, load the base model, fine-tune, and write the personalisation folder."""
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarstudio_ns.guidance.loading import load_diffusion
        from avatarstudio_ns.guidance.personalize import PersonalizeConfig, personalize

        selection = KeyframeSelectionConfig(
            n_time=self.n_time, min_gap=self.min_gap, time_aware=self.time_aware, frontal_camera=self.frontal_camera
        )
        keyframes, images = keyframes_from_recon(self.load_config, selection, self.checkpoint, self.image_source)
        CONSOLE.print(
            f"{len(keyframes)} keyframes: " + ", ".join(f"cam {k.camera_index} t {k.timestep_index}" for k in keyframes)
        )
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        base = load_diffusion(self.base_model, device, dtype=None if self.dtype == "auto" else self.dtype)
        config = PersonalizeConfig(
            steps=self.steps,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            resolution=self.resolution,
            mode=self.mode,
            lora_rank=self.lora_rank,
            class_noun=self.class_noun,
            prior_weight=self.prior_weight,
            num_class_images=self.num_class_images,
            class_image_dir=self.class_image_dir,
            shared_identifier=self.shared_identifier,
            seed=self.seed,
        )
        result = personalize(keyframes, images, base, config, self.output)
        state = "reused" if result.reused else f"trained ({len(result.losses)} steps)"
        CONSOLE.print(f"Personalisation {state}: {result.folder}")
