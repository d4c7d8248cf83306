"""Load a text-to-image latent diffusion model (Stable Diffusion 1.x / 2.x layout) for guidance and training.

One loader for every source: a Hugging Face id, a local diffusers folder, or ``builtin`` (the small model
shipped inside this package). Offline with the model absent, it fails at once with one sentence saying what
to pass instead, rather than hanging on the network or raising from deep inside diffusers.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from huggingface_hub import constants as hub_constants
from huggingface_hub import model_info
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from torch import Tensor
from transformers import CLIPTextModel, CLIPTokenizer

from avatarstudio_ns.guidance.prediction import alphabar_at, to_epsilon
from avatarstudio_ns.guidance.text_cache import TextEmbeddingCache

DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The base model used when none is named."""
BUILTIN = "builtin"
"""The name that selects the model shipped in the package."""
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
"""Sub-folders a diffusers Stable Diffusion folder must have."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HINT = (
    "Pass a local diffusers folder (with model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) "
    "or 'builtin' for the small model shipped with avatarstudio_ns."
)


logger = logging.getLogger(__name__)


class DiffusionModelNotFound(RuntimeError):
    """The requested diffusion model cannot be found locally or fetched (or a local copy of it cannot be read)."""


def builtin_model_dir() -> Path:
    """Where the package keeps its built-in model."""
    return Path(__file__).resolve().parents[1] / "assets" / "builtin_model"


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """Half precision on CUDA (fp16 unless told otherwise), fp32 on the CPU (half is slow or unsupported there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    names |= {"fp32": torch.float32, "float32": torch.float32}
    if dtype is not None:
        if dtype not in names:
            raise ValueError(f"Unknown dtype {dtype!r}; use one of {sorted(names)}.")
        return names[dtype]
    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass
class DiffusionModel:
    """A loaded latent diffusion model: the parts guidance and fine-tuning use, all frozen and in eval mode."""

    unet: UNet2DConditionModel
    """Noise-prediction network."""
    vae: AutoencoderKL
    """Image <-> latent autoencoder."""
    text_encoder: CLIPTextModel | None
    """Prompt encoder; ``None`` after :meth:`release_text_encoder`."""
    tokenizer: CLIPTokenizer
    """Prompt tokenizer."""
    scheduler: DDPMScheduler
    """Training noise schedule (``add_noise``, ``alphas_cumprod``), whatever scheduler the folder names."""
    prediction_type: str
    """What the UNet predicts: ``epsilon``, ``v_prediction`` or ``sample``."""
    source: str
    """The folder or hub id the weights came from."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Device of every module."""
    dtype: torch.dtype = torch.float32
    """Compute dtype of the UNet and text encoder."""
    caption_words: frozenset[str] | None = None
    """Every word of the captions the model was trained on, where its folder records them (``caption_words`` in
    ``training.json``, written by ``avatarstudio train-builtin``); None when unknown (Stable Diffusion's captions
    are the web's)."""
    text_cache: TextEmbeddingCache = field(init=False)
    """Prompt embeddings, computed once."""

    def __post_init__(self) -> None:
        self.text_cache = TextEmbeddingCache(self._encode_prompts)
        self.alphas_cumprod: Float[Tensor, " T"] = self.scheduler.alphas_cumprod.to(self.device, torch.float32)

    @property
    def num_train_timesteps(self) -> int:
        """Length of the noise schedule (1000 for Stable Diffusion)."""
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def vae_scale_factor(self) -> int:
        """How many image pixels one latent pixel covers along a side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        """The image side the model was trained at (512 for Stable Diffusion 1.5)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def _encode_prompts(self, prompts: list[str]) -> Tensor:
        if self.text_encoder is None:
            raise RuntimeError("The text encoder was released; only cached prompts are available.")
        for prompt in prompts:
            warn_if_truncated(self.tokenizer, prompt)
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0].to(self.dtype)

    def embed(self, prompts: str | list[str]) -> Float[Tensor, "n tokens dim"]:
        """Text embeddings of prompts (cached; see :class:`TextEmbeddingCache`)."""
        return self.text_cache(prompts)

    def release_text_encoder(self) -> None:
        """Free the text encoder; embeddings already cached stay available."""
        self.text_cache.encode = None
        self.text_encoder = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def encode_images(
        self, images: Float[Tensor, "b 3 h w"], sample: bool = True, generator: torch.Generator | None = None
    ) -> Float[Tensor, "b c hl wl"]:
        """Scaled VAE latents of images in [0, 1]; differentiable (no ``no_grad`` here).

        Args:
            images: RGB in [0, 1].
            sample: Draw from the VAE posterior (as Stable Diffusion was trained) instead of taking its mean.
            generator: Random source for the posterior sample.
        """
        vae_dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode((images * 2.0 - 1.0).to(vae_dtype)).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).float()

    def decode_latents(self, latents: Float[Tensor, "b c hl wl"]) -> Float[Tensor, "b 3 h w"]:
        """Images in [0, 1] from scaled latents."""
        vae_dtype = next(self.vae.parameters()).dtype
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        images = self.vae.decode((latents / self.vae.config.scaling_factor + shift).to(vae_dtype)).sample
        return (images.float() * 0.5 + 0.5).clamp(0.0, 1.0)

    def predict_epsilon(
        self,
        unet: UNet2DConditionModel,
        x_t: Float[Tensor, "b c h w"],
        t: Tensor,
        embeddings: Float[Tensor, "b tokens dim"],
    ) -> Float[Tensor, "b c h w"]:
        """Run ``unet`` and return its noise estimate in fp32 (v and x0 predictions converted)."""
        t = t.to(self.device).long().expand(x_t.shape[0]) if t.ndim == 0 else t.to(self.device).long()
        out = unet(x_t.to(self.dtype), t, encoder_hidden_states=embeddings.to(self.dtype)).sample.float()
        return to_epsilon(out, x_t.float(), alphabar_at(self.alphas_cumprod, t), self.prediction_type)


def warn_if_truncated(tokenizer: CLIPTokenizer, prompt: str) -> None:
    """Logs a warning saying what the text encoder keeps of a prompt longer than it reads, and what it drops."""
    limit = int(tokenizer.model_max_length)
    # verbose=False: the tokenizer's own warning speaks of indexing errors, which truncation rules out.
    ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
    if len(ids) <= limit:
        return
    # The ids hold a start and an end token around the prompt's; the encoder reads limit - 1 of the first and its end.
    kept = tokenizer.decode(ids[1 : limit - 1], skip_special_tokens=True)
    dropped = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True)
    logger.warning(
        "The prompt is %d tokens long but the text encoder reads %d: it keeps the prompt up to %r and drops the last "
        "%d tokens (%r); shorten the prompt to have all of it read.",
        len(ids) - 2,
        limit - 2,
        "..." + kept[-40:].split(" ", 1)[-1] if len(kept) > 40 else kept,
        len(ids) - limit,
        dropped,
    )


def prompt_words(prompt: str) -> list[str]:
    """The words of a prompt, lower case, without punctuation."""
    return re.findall(r"[a-z]+", prompt.lower())


_WARNED_UNKNOWN_WORDS: set[tuple[str, tuple[str, ...]]] = set()
"""(model source, unknown words) pairs already warned about in this process."""


def warn_if_unknown_words(model: DiffusionModel, prompt: str) -> list[str]:
    """Logs a warning naming the prompt's words that the model's training captions never used, and returns them.

    A model trained on a closed vocabulary (the built-in one) cannot follow such words: "photo of an old person"
    asks the built-in model for nothing it knows, and an edit with it would quietly change little. Models that do
    not record their captions' words (Stable Diffusion) are not checked.

    The warning is given once per model and set of words in a process: the demo and the suite check every prompt
    before their runs, and each edit run checks its own again.
    """
    if model.caption_words is None:
        return []
    unknown = list(dict.fromkeys(word for word in prompt_words(prompt) if word not in model.caption_words))
    if unknown and (model.source, tuple(unknown)) not in _WARNED_UNKNOWN_WORDS:
        _WARNED_UNKNOWN_WORDS.add((model.source, tuple(unknown)))
        logger.warning(
            "The base model %s was trained only on captions that never use %s, so it will not follow %s. It knows "
            "these words: %s. Reword the prompt with them, or pass a Stable Diffusion model with --base-model.",
            model.source,
            ", ".join(repr(word) for word in unknown),
            "it" if len(unknown) == 1 else "them",
            " ".join(sorted(model.caption_words)),
        )
    return unknown


def _caption_words(folder: Path) -> frozenset[str] | None:
    """The caption vocabulary a model folder's ``training.json`` records, or None."""
    path = folder / "training.json"
    if not path.is_file():
        return None
    try:
        words = json.loads(path.read_text()).get("caption_words")
    except (OSError, ValueError, AttributeError):
        logger.warning("Ignoring %s: it is not a readable JSON object.", path)
        return None
    return frozenset(words) if isinstance(words, list) else None


def _unreadable_weights(folder: Path) -> tuple[Path, Exception] | None:
    """The first weight file of a diffusers folder whose safetensors header cannot be read (a truncated download or
    copy), with the reason, or None. Only headers are read: this is quick on multi-gigabyte files."""
    for component in COMPONENTS:
        for path in sorted((folder / component).glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except (SafetensorError, OSError) as error:
                return path, error
    return None


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "unet").is_dir())


def _hub_offline() -> bool:
    try:
        offline = bool(hub_constants.HF_HUB_OFFLINE)
    except Exception:  # an unexpected huggingface_hub layout must not break loading local folders
        offline = False
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"))
    return offline or any(f.strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def _load_components(source: str, local_files_only: bool, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict:
    kw = {"local_files_only": local_files_only}
    return {
        "unet": UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **kw),
        "vae": AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=vae_dtype, **kw),
        "text_encoder": CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype, **kw),
        "tokenizer": CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kw),
        # Whatever sampler the folder names, training and SDS need the training schedule: the DDPM view of
        # the same betas gives add_noise and alphas_cumprod.
        "scheduler": DDPMScheduler.from_pretrained(source, subfolder="scheduler", **kw),
    }


def _load_from_hub(model: str, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict:
    """Load from the local Hugging Face cache, else download; never hang when the hub is unreachable."""
    try:
        return _load_components(model, True, dtype, vae_dtype)
    except (OSError, ValueError) as cached_error:
        if _hub_offline():
            raise DiffusionModelNotFound(
                f"Diffusion model {model!r} is not in the local Hugging Face cache and the hub is offline. {_HINT}"
            ) from cached_error
    try:
        # A short reachability probe first: without it, an unreachable hub can stall every file request.
        model_info(model, timeout=10)
    except Exception as error:
        raise DiffusionModelNotFound(
            f"Diffusion model {model!r} is not cached locally and the Hugging Face hub cannot provide it "
            f"({type(error).__name__}). {_HINT}"
        ) from error
    try:
        return _load_components(model, False, dtype, vae_dtype)
    except (OSError, ValueError) as error:
        raise DiffusionModelNotFound(f"Could not download diffusion model {model!r}: {error}. {_HINT}") from error


def load_diffusion(
    model: str = DEFAULT_BASE_MODEL,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    vae_fp32: bool = False,
) -> DiffusionModel:
    """Load a Stable-Diffusion-layout model, frozen, in eval mode, with SDPA attention (diffusers' default).

    Args:
        model: A Hugging Face id (e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``,
            ``stabilityai/stable-diffusion-2-1``), a local diffusers folder, or ``builtin``.
        device: Where the modules live.
        dtype: Compute dtype; default fp16 on CUDA, fp32 on the CPU (``"bf16"`` or a torch dtype to override).
        vae_fp32: Keep the VAE in fp32 (costs memory; avoids rare fp16 overflow in the encoder).

    Raises:
        DiffusionModelNotFound: the model cannot be found locally and cannot be fetched.
    """
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    vae_dtype = torch.float32 if vae_fp32 else dtype

    if model == BUILTIN:
        folder = builtin_model_dir()
        if not _is_model_folder(folder):
            raise DiffusionModelNotFound(
                f"The built-in diffusion model is not shipped yet (nothing at {folder}). Pass --base-model with a "
                f"local diffusers folder or a Hugging Face id (default {DEFAULT_BASE_MODEL!r}) instead."
            )
        components, source = _load_components(str(folder), True, dtype, vae_dtype), str(folder)
        words = _caption_words(folder)
    elif Path(model).expanduser().exists():
        folder = Path(model).expanduser()
        missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
        if missing:
            raise DiffusionModelNotFound(
                f"{folder} is not a diffusers model folder: it lacks {', '.join(m + '/' for m in missing)}. {_HINT}"
            )
        unreadable = _unreadable_weights(folder)
        if unreadable is not None:
            path, error = unreadable
            raise DiffusionModelNotFound(
                f"{path} cannot be read ({error}): the copy of {folder} is incomplete or damaged, so copy or download "
                "it again, or pass another base model."
            )
        try:
            components, source = _load_components(str(folder), True, dtype, vae_dtype), str(folder.resolve())
        except (OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DiffusionModelNotFound(f"{folder} cannot be loaded ({reason}). {_HINT}") from error
        words = _caption_words(folder)
    elif _HUB_ID.match(model) and not model.startswith((".", "~")):
        components, source = _load_from_hub(model, dtype, vae_dtype), model
        words = None
    else:
        raise DiffusionModelNotFound(f"Diffusion model folder {model!r} does not exist. {_HINT}")

    for name in ("unet", "vae", "text_encoder"):
        module = components[name].to(device)
        module.requires_grad_(False)
        module.eval()
    scheduler = components["scheduler"]
    return DiffusionModel(
        unet=components["unet"],
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        scheduler=scheduler,
        prediction_type=str(scheduler.config.prediction_type),
        source=source,
        device=device,
        dtype=dtype,
        caption_words=words,
    )
