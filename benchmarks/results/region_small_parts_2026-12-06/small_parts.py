"""Can the base model localise a part as small as the eyes or the lips on a 64 px render?

On evaluation views of a reconstructed synth avatar (4 training cameras, every 24th frame), three per-pixel signals
for each prompt are compared with the synth's labels of the prompt's target, in 2D (no canonical lift, no colour
growth, no votes): the relevance the edit region starts from (``prompt_relevance``: the base model's prediction
under the prompt minus under "photo of a person"), and the UNet's cross-attention on each word the prompt adds, per
attention resolution. Each signal is cut at Otsu's split of its head values (as the region is), at Otsu's split of
the upper class again, and at the best of 80 quantiles (chosen against the labels: a ceiling, not a rule).

    python small_parts.py <recon config.yml> <base model> <output.json>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/, for region_iou
import region_iou  # noqa: E402

from avatarstudio_ns.edit.region import otsu_threshold
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import EvalSettings, collect_views, pipeline_outputs
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET
from avatarstudio_ns.guidance.imaging import paste_square, square_boxes, to_model_square
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.prediction import add_noise, alphabar_at
from avatarstudio_ns.guidance.relevance import prompt_relevance

PROMPTS = [
    f"photo of a person with {p}"
    for p in ("green eyes", "red lips", "blue hair", "red hair", "white hair", "pale skin", "dark skin", "green skin")
]
LEVELS = (0.3, 0.5, 0.7)


class AttentionRecorder(AttnProcessor):
    """Diffusers' plain attention that also keeps each call's probabilities, averaged over heads."""

    def __init__(self, store: list) -> None:
        super().__init__()
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        b, n, _ = hidden_states.shape
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None)
        self.store.append(probs.reshape(b, -1, n, probs.shape[-1]).mean(1))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def load_views(recon: Path, base_model: str):
    pipeline = region_iou.edit_pipeline_on_recon(recon, base_model, "small_parts_")
    model = pipeline.model.eval()
    views = collect_views(*pipeline_outputs(pipeline), EvalSettings(num_train_cameras=4, timestep_stride=24))
    surfaces = [model.canonical_surface(c) for c in views.cameras]
    rgb = torch.stack([s[2] for s in surfaces]).permute(0, 3, 1, 2).clamp(0, 1)
    accumulation = torch.stack([s[1] for s in surfaces])
    return model, views, rgb, accumulation


def cuts(maps: np.ndarray, head: np.ndarray, target: np.ndarray, labels: np.ndarray) -> dict:
    values = np.concatenate([m[h] for m, h in zip(maps, head, strict=True)])

    def score(threshold: float) -> tuple[float, float]:
        region = ((maps > threshold) & head).astype(float)
        return M.region_iou(region, target, labels != 0), float(region[head].mean())

    first = otsu_threshold(torch.from_numpy(values))
    upper = values[values > first]
    second = otsu_threshold(torch.from_numpy(upper)) if len(upper) else first
    best = max(score(q)[0] for q in np.quantile(values, np.linspace(0.3, 0.998, 80)))
    (iou, share), (iou2, share2) = score(first), score(second)
    return {"otsu": iou, "otsu_share": share, "otsu_twice": iou2, "otsu_twice_share": share2, "best": best}


def main(recon: Path, base_model: str, output: Path) -> None:
    torch.set_num_threads(1)
    model, views, rgb, accumulation = load_views(recon, base_model)
    base = load_diffusion(base_model, "cpu")
    store: list = []
    base.unet.set_attn_processor(
        {name: AttentionRecorder(store) if "attn2" in name else AttnProcessor() for name in base.unet.attn_processors}
    )
    head = (accumulation > 0.5).numpy()
    h, w = rgb.shape[-2:]
    labels = views.resized(h, w).labels
    boxes = square_boxes(accumulation, h, w, batch=len(rgb))
    z = base.encode_images(to_model_square(rgb, base.resolution, background=model.background_color, boxes=boxes), False)
    reference = base.embed("photo of a person")
    reference_ids = set(base.tokenizer("photo of a person").input_ids)

    def to_pixels(latent_map: torch.Tensor, i: int) -> np.ndarray:
        side = int(boxes[i][2])
        square = F.interpolate(latent_map[None, None], size=(side, side), mode="bilinear", align_corners=False)[0]
        return paste_square(square, boxes[i], torch.zeros(1, h, w))[0].numpy()

    results = {}
    for prompt in PROMPTS:
        target = M.region_mask(labels, DEFAULT_PROMPT_SET.find(prompt).regions)
        text = base.embed(prompt)
        relevance = prompt_relevance(
            base,
            rgb,
            text,
            reference,
            LEVELS,
            8,
            generator=torch.Generator().manual_seed(0),
            foreground=accumulation,
            background=model.background_color,
        ).numpy()
        result = {"target_share": float(target[head].mean()), "relevance": cuts(relevance, head, target, labels)}
        ids = base.tokenizer(prompt).input_ids
        words = [
            (j, base.tokenizer.convert_ids_to_tokens(t).removesuffix("</w>"))
            for j, t in enumerate(ids)
            if t not in reference_ids
        ]
        by_side: dict[int, list[torch.Tensor]] = {}
        generator = torch.Generator().manual_seed(0)
        for level in LEVELS:
            t = torch.full((len(z),), round(level * (base.num_train_timesteps - 1)), dtype=torch.long)
            for _ in range(4):
                store.clear()
                noise = torch.randn(z.shape, generator=generator)
                with torch.no_grad():
                    base.unet(
                        add_noise(z, noise, alphabar_at(base.alphas_cumprod, t)),
                        t,
                        encoder_hidden_states=text.expand(len(z), -1, -1),
                    )
                for probs in store:
                    side = round(probs.shape[1] ** 0.5)
                    grid = probs.reshape(len(z), side, side, -1).permute(0, 3, 1, 2)
                    by_side.setdefault(side, []).append(F.interpolate(grid, size=z.shape[-2:], mode="bilinear"))
        for side, grids in sorted(by_side.items(), reverse=True):
            attention = torch.stack(grids).mean(0)
            for j, word in words:
                maps = np.stack([to_pixels(attention[i, j], i) for i in range(len(z))])
                result[f"attention {side}x{side} '{word}'"] = cuts(maps, head, target, labels)
        results[prompt] = result
        print(prompt, json.dumps(result), flush=True)
    output.write_text(json.dumps({"recon": str(recon), "base_model": base_model, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
