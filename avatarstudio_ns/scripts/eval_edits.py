"""``avatarstudio eval``: score text edits of an avatar on identity, prompt fidelity and temporal consistency."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import tyro
from rich.console import Console

from avatarstudio_ns.eval.evaluate import (
    EvalSettings,
    collect_views,
    evaluate,
    load_pipeline,
    pipeline_outputs,
    print_report,
    recorded_prompt,
    write_report,
)
from avatarstudio_ns.eval.prompt_set import DEFAULT_PROMPT_SET, load_prompt_set

CONSOLE = Console()


@dataclass
class EvalCommand:
    """Score edited avatars against the original on the capture's cameras and times: PSNR / SSIM outside the edited
    region, colour of the edited region against the prompt's colour, and flicker of the edit on the canonical
    surface across time and views. Needs a capture with semantic labels and canonical points (avatarstudio synth)."""

    original: Path
    """config.yml of the original avatar (an ``avatarstudio-recon`` run)."""
    edited: Tuple[Path, ...]
    """config.yml of one or more edited avatars (``avatarstudio-edit`` runs) of the same capture."""
    prompt_set: Optional[Path] = None
    """Prompt set file (JSON or YAML, see avatarstudio_ns/eval/prompt_set.py); default: the built-in set (blue hair,
    dark skin, green skin, green eyes)."""
    prompt: Tuple[str, ...] = ()
    """The prompt of each edited avatar, as in the prompt set; default: the prompt its config records."""
    output: Path = Path("edit_scores.json")
    """JSON report to write; a markdown table is written beside it (same name, .md)."""
    settings: tyro.conf.OmitArgPrefixes[EvalSettings] = field(default_factory=EvalSettings)  # type: ignore[valid-type]
    """Rendering and measuring settings."""

    def main(self) -> None:
        """Loads the avatars (renderers only, no diffusion model), renders, scores and writes the report."""
        if self.prompt and len(self.prompt) != len(self.edited):
            raise SystemExit(f"Give one --prompt per --edited config ({len(self.edited)} given), or none.")
        prompt_set = load_prompt_set(self.prompt_set) if self.prompt_set is not None else DEFAULT_PROMPT_SET
        # Every prompt is resolved before anything is loaded or rendered, so a bad one fails at once.
        edits = []
        for i, config in enumerate(self.edited):
            text = self.prompt[i] if self.prompt else recorded_prompt(config)
            if text is None:
                raise SystemExit(f"{config} records no edit prompt; pass --prompt.")
            try:
                entry = prompt_set.find(text)
            except KeyError as err:
                raise SystemExit(str(err.args[0])) from None
            edits.append((entry, self._loader(config), str(config)))

        original = load_pipeline(self.original)
        self._train, val = pipeline_outputs(original)
        views = collect_views(self._train, val, self.settings)
        report = evaluate(original.model, edits, views, prompt_set, self.settings, original_name=str(self.original))
        json_path, md_path = write_report(report, self.output)
        print_report(report, CONSOLE)
        CONSOLE.print(f"Wrote {json_path} and {md_path}")

    def _loader(self, config: Path):
        """Loads an edited avatar's model when called, warning when its capture sits in another world frame."""

        def load():
            pipeline = load_pipeline(config)
            train, _ = pipeline_outputs(pipeline)
            moved = (train.dataparser_transform - self._train.dataparser_transform).abs().max() > 1e-5
            if moved or abs(train.dataparser_scale - self._train.dataparser_scale) > 1e-6:
                CONSOLE.print(f"[yellow]{config} places the capture differently from {self.original}; renders differ.")
            return pipeline.model

        return load
