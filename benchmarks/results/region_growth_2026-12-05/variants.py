"""Region IoU of the colour growth's variants on one recon, the relevance computed once per prompt (a record of the
2026-12-05 measurements; the edit runs the chosen variant, ``grow_by_colour`` in avatarstudio_ns/edit/region.py).

    python benchmarks/results/region_growth_2026-12-05/variants.py RECON/config.yml OUT.json PROMPT [PROMPT ...]

Variants: "rgb" (the growth before: BGR, rest of the head probably outside, the whole inside surely inside),
"lab25" (CIELAB, lightness weighed 0.25), "mNN_erode_lab25" (also: pixels within NN hundredths under Otsu's split
probably inside, the inside's edge pixels probably inside); m10 is the region's soft edge (softness 0.2), the default.
"""

import copy
import json
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from avatarstudio_ns.data.keyframes import avatar_keyframes
from avatarstudio_ns.edit import region as R
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import EvalSettings, collect_views, pipeline_outputs
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.guidance.relevance import prompt_relevance
from avatarstudio_ns.scripts.suite import SUITE_PROMPTS
from method_configs.edit import avatarstudio_edit_fast

MODES = (
    tuple(sys.argv[sys.argv.index("--modes") + 1 :])
    if "--modes" in sys.argv
    else (
        "rgb",
        "lab25",
        "m00_erode_lab25",
        "m05_erode_lab25",
        "m10_erode_lab25",
        "m05_lab25",
    )
)


def grow(image, inside, head, relevance, threshold, mode, low_mean):
    on_head, core = head.numpy(), inside.numpy() & head.numpy()
    if not core.any() or core.sum() == on_head.sum():
        return inside & head
    labels = np.full(core.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    margin = re.search(r"m(\d\d)", mode)
    if margin:
        labels[(relevance.numpy() >= threshold - int(margin.group(1)) / 100) & on_head] = cv2.GC_PR_FGD
    if "erode" in mode:
        interior = cv2.erode(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if interior.any():
            labels[core & ~interior] = cv2.GC_PR_FGD
            core = interior
    if "sbg" in mode:
        labels[(relevance.numpy() < low_mean) & on_head] = cv2.GC_BGD
    labels[core], labels[~on_head] = cv2.GC_FGD, cv2.GC_BGD
    rgb = image.clamp(0, 1).numpy()
    lab_weight = re.search(r"lab(\d\d)", mode)
    if lab_weight:
        weight = int(lab_weight.group(1)) / 100
        lab = cv2.cvtColor(np.ascontiguousarray(rgb.astype(np.float32)), cv2.COLOR_RGB2Lab)
        lightness = lab[..., 0] * 2.55 * weight + 128 * (1 - weight)
        pixels = np.stack([lightness, lab[..., 1] + 128, lab[..., 2] + 128], -1)
    else:
        pixels = rgb[..., ::-1] * 255
    pixels = np.ascontiguousarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    cv2.setRNGSeed(0)
    cv2.grabCut(pixels, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
    return torch.from_numpy(np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)) & on_head)


def main() -> None:
    torch.set_num_threads(1)
    args = sys.argv[: sys.argv.index("--modes")] if "--modes" in sys.argv else sys.argv
    recon_path, out, prompts = Path(args[1]), Path(args[2]), args[3:]
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    recon = yaml.load(recon_path.read_text(), Loader=yaml.Loader)
    config.pipeline.datamanager.data = recon.pipeline.datamanager.data
    config.load_dir = recon_path.parent / "nerfstudio_models"
    config.output_dir = Path(tempfile.mkdtemp(prefix="variants_"))
    config.vis, config.logging.local_writer.enable = "tensorboard", False
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline, datamanager = trainer.pipeline, trainer.pipeline.datamanager
    keyframes = avatar_keyframes(
        pipeline.model.get_frame_embeddings(),
        datamanager.train_dataset,
        datamanager.eval_dataset,
        config.pipeline.keyframes,
    )
    datamanager.set_keyframes(keyframes)
    cameras = [datamanager.keyframe_camera(i) for i in range(len(keyframes))]
    base = load_diffusion("builtin", "cpu")
    views = collect_views(*pipeline_outputs(pipeline), EvalSettings(num_train_cameras=3, timestep_stride=24))
    model = pipeline.model
    model.eval()
    cfg = R.EditRegionConfig()
    with torch.no_grad():
        surfaces = [model.canonical_surface(c) for c in views.cameras]
        positions = torch.stack([s[0] for s in surfaces])
        view_heads = torch.stack([s[1] for s in surfaces]) > 0.5
        frames = [model.canonical_surface(c) for c in cameras]
    heads = [accumulation > 0.5 for _, accumulation, _ in frames]
    results = {}
    for prompt in prompts:
        entry = SUITE_PROMPTS.find(prompt)
        generator = torch.Generator().manual_seed(cfg.seed)
        text, reference = base.embed(prompt), base.embed(cfg.reference_prompt)
        with torch.no_grad():
            relevances = [
                prompt_relevance(
                    base,
                    rgb.permute(2, 0, 1)[None].clamp(0, 1),
                    text,
                    reference,
                    cfg.noise_levels,
                    cfg.num_noises,
                    generator=generator,
                    foreground=accumulation[None],
                    background=model.background_color,
                )[0]
                for _, accumulation, rgb in frames
            ]
        values = torch.cat([r[h] for r, h in zip(relevances, heads, strict=True)])
        scale = float(torch.quantile(values, 0.99))
        scaled = [r / scale for r in relevances]
        threshold = R.otsu_threshold(values / scale)
        low_mean = float((values / scale)[values / scale < threshold].mean())
        inside_value = threshold + 0.5 * cfg.softness
        results[prompt] = {}
        for mode in MODES:
            grown = [
                torch.where(grow(rgb, r >= inside_value, h, r, threshold, mode, low_mean), r.clamp_min(inside_value), r)
                for r, (_, _, rgb), h in zip(scaled, frames, heads, strict=True)
            ]
            model.edit_region.fit(
                torch.cat([c[h] for (c, _, _), h in zip(frames, heads, strict=True)]),
                torch.cat([r[h] for r, h in zip(grown, heads, strict=True)]),
            )
            model.edit_region.grid.copy_(R.sharpen(model.edit_region.grid, threshold, cfg.softness))
            with torch.no_grad():
                region = (model.edit_region(positions)[..., 0] * view_heads).numpy()
            labels = views.resized(*region.shape[1:3]).labels
            target, foreground = M.region_mask(labels, entry.regions), labels != 0
            precision, recall = M.region_precision_recall(region, target, foreground)
            results[prompt][mode] = [
                round(M.region_iou(region, target, foreground), 3),
                round(precision, 3),
                round(recall, 3),
            ]
        print(prompt, results[prompt], flush=True)
        out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
