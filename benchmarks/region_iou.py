"""Region IoU, precision and recall of the edit region per prompt on a reconstructed synth avatar, no edit trained.

For each prompt, the edit preset's region settings find the region on the avatar's keyframes exactly as an edit's
first step does (``fit_edit_region``); the region is then looked up at the rendered surface of evaluation views and
compared with the synth's labels of the prompt's target. Prints one line per prompt and writes a JSON file.

    python benchmarks/region_iou.py --recon <recon run>/config.yml --output region_iou.json \
        --prompts "photo of a person with blue hair" "photo of a person with dark skin"
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro
import yaml
from nerfstudio.pipelines.base_pipeline import VanillaPipeline

from avatarstudio_ns.data.keyframes import KeyframeSelectionConfig, avatar_keyframes
from avatarstudio_ns.data.labels import LABELS
from avatarstudio_ns.edit.region import EditRegionConfig, fit_edit_region, region_keyframes
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import EvalSettings, collect_views, pipeline_outputs
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, load_prompt_set
from avatarstudio_ns.guidance.loading import load_diffusion
from avatarstudio_ns.scripts.suite import SUITE_PROMPTS
from method_configs.edit import avatarstudio_edit_fast


def edit_pipeline_on_recon(
    recon: Path, base_model: str, prefix: str, keyframes: KeyframeSelectionConfig | None = None
) -> VanillaPipeline:
    """The fast edit preset's pipeline set up on a recon (its capture, its weights; trainer output in a temporary
    folder named with ``prefix``), without its guidance: what a record script needs to fit regions or render the
    avatar as an edit starts from it."""
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    config.pipeline.datamanager.data = yaml.load(recon.read_text(), Loader=yaml.Loader).pipeline.datamanager.data
    config.pipeline.guidance.base_model = base_model
    if keyframes is not None:
        config.pipeline.keyframes = keyframes
    config.load_dir = recon.parent / "nerfstudio_models"
    config.output_dir = Path(tempfile.mkdtemp(prefix=prefix))
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer.pipeline


@dataclass
class RegionIoU:
    """Measure the edit region of each prompt against the synth's labels."""

    recon: Path
    """config.yml of an avatarstudio-recon(-cpu) run of a synth capture."""
    output: Path = Path("region_iou.json")
    """JSON file of the IoU per prompt."""
    prompts: tuple[str, ...] = tuple(p.prompt for p in SUITE_PROMPTS.prompts)
    """Prompts, each in the prompt set (for its target regions)."""
    prompt_set: Path | None = None
    """Prompt set file; default: the suite's prompts and the built-in ones."""
    base_model: str = "builtin"
    """Base diffusion model."""
    region: EditRegionConfig = field(default_factory=EditRegionConfig)
    """Region settings (default: the edit's)."""
    keyframes: KeyframeSelectionConfig = field(
        default_factory=lambda: copy.deepcopy(avatarstudio_edit_fast.config.pipeline.keyframes)
    )
    """Keyframes chosen as the edit chooses them (default: the edit's); the region is fitted on those that
    ``--region.first-frame-only`` keeps (the first frame's; ``--region.no-first-frame-only`` for all)."""
    settings: EvalSettings = field(
        default_factory=lambda: EvalSettings(num_train_cameras=3, timestep_stride=24, clip_model=None)
    )
    """Views the region is scored on."""

    def main(self) -> None:
        torch.set_num_threads(1)
        prompt_set = load_prompt_set(self.prompt_set) if self.prompt_set else None
        pipeline = edit_pipeline_on_recon(self.recon, self.base_model, "region_iou_", self.keyframes)
        datamanager = pipeline.datamanager
        keyframes = avatar_keyframes(
            pipeline.model.get_frame_embeddings(),
            datamanager.train_dataset,
            datamanager.eval_dataset,
            self.keyframes,
        )
        datamanager.set_keyframes(keyframes)
        cameras = [datamanager.keyframe_camera(i) for i in region_keyframes(keyframes, self.region)]
        base = load_diffusion(self.base_model, "cpu")
        views = collect_views(*pipeline_outputs(pipeline), self.settings)
        pipeline.model.eval()
        surfaces = [pipeline.model.canonical_surface(c) for c in views.cameras]
        positions = torch.stack([s[0] for s in surfaces])
        head = torch.stack([s[1] for s in surfaces]) > 0.5
        results = {}
        for prompt in self.prompts:
            entry = (prompt_set or DEFAULT_PROMPT_SET).find(prompt)
            start = time.perf_counter()
            fit_edit_region(pipeline.model, cameras, base, prompt, self.region)
            region = (pipeline.model.edit_region(positions)[..., 0] * head).numpy()
            labels = views.resized(*region.shape[1:3]).labels
            target, foreground = M.region_mask(labels, entry.regions), labels != 0
            iou = M.region_iou(region, target, foreground)
            # What the region wrongly takes in is painted by the edit: the identity outside the target follows the
            # region's precision, the edit's reach its recall.
            precision, recall = M.region_precision_recall(region, target, foreground)
            # Where the rest of the region lies: its weight outside the target, per synth label.
            spill = region * (foreground & ~target)
            outside = {
                name: float(spill[labels == label].sum() / max(spill.sum(), 1e-8))
                for name, label in LABELS.items()
                if (spill[labels == label] > 0).any()
            }
            results[prompt] = {
                "regions": list(entry.regions),
                "iou": iou,
                "precision": precision,
                "recall": recall,
                "outside": outside,
                "seconds": time.perf_counter() - start,
            }
            print(
                f"{prompt}: region IoU {iou:.3f}, precision {precision:.3f}, recall {recall:.3f} "
                f"({', '.join(entry.regions)}); outside the target: "
                + ", ".join(f"{k} {v:.0%}" for k, v in sorted(outside.items(), key=lambda kv: -kv[1]) if v >= 0.05),
                flush=True,
            )
        self.output.write_text(json.dumps({"recon": str(self.recon), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    tyro.cli(RegionIoU).main()
