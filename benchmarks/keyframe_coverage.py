"""How well the time keyframes cover a synthetic performance's known expressions, per selection rule.

For each recon of a synth capture (its synth.json holds every frame's expression and head pose), the keyframes
are chosen from the recon's per-frame codes as the edit chooses them, once per rule, and scored against the
performance's parameters (jaw opening, smile, blink, brow raise, head yaw and pitch):

- reach: for each parameter, the largest value among the keyframes (the first frame included) over the largest
  in the performance (1 = the keyframes show its extreme);
- coverage: mean and worst distance from a frame of the performance to its nearest keyframe in the space of those
  six parameters, each scaled by its range over the performance (0 = every frame is a keyframe);
- spread: the shortest gap, in frames, between two keyframes.

    python benchmarks/keyframe_coverage.py --recons outputs/head/avatarstudio-recon-cpu/<time>/config.yml ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro
from nerfstudio.utils.eval_utils import eval_setup

from avatarstudio_ns.data.keyframes import KeyframeSelectionConfig, avatar_keyframes

PARAMETERS = ("jaw_open", "smile", "blink", "brow_raise", "yaw_deg", "pitch_deg")
"""The performance's expression and pose parameters (synth.json), in the order of the report's columns."""


@dataclass
class CoverageArgs:
    """Keyframe coverage of synth performances."""

    recons: list[Path] = field(default_factory=list)
    """config.yml of avatarstudio-recon runs on synth captures (with synth.json)."""
    rules: tuple[str, ...] = ("deviant", "farthest")
    """Selection rules to compare (KeyframeSelectionConfig.rule)."""
    n_time: int = 6
    """Time keyframes per rule (the paper: 6)."""
    output: Path | None = None
    """Also write the figures as JSON here."""


def coverage(parameters: torch.Tensor, keyframe_rows: list[int]) -> dict:
    """Reach per parameter, mean / worst scaled distance to the nearest keyframe, and the shortest gap.

    Args:
        parameters: [frames, len(PARAMETERS)] performance parameters, one row per timestep.
        keyframe_rows: Timesteps of the keyframes (the first frame included).
    """
    magnitude = parameters.abs()
    reach = magnitude[keyframe_rows].max(dim=0).values / magnitude.max(dim=0).values.clamp_min(1e-8)
    span = (parameters.max(dim=0).values - parameters.min(dim=0).values).clamp_min(1e-8)
    scaled = parameters / span
    nearest = torch.cdist(scaled, scaled[keyframe_rows]).min(dim=1).values
    rows = sorted(set(keyframe_rows))
    gaps = [b - a for a, b in zip(rows, rows[1:], strict=False)]
    return {
        "reach": {name: round(float(r), 3) for name, r in zip(PARAMETERS, reach, strict=True)},
        "mean_distance": round(float(nearest.mean()), 3),
        "worst_distance": round(float(nearest.max()), 3),
        "shortest_gap": min(gaps) if gaps else None,
    }


def main(args: CoverageArgs) -> None:
    """Choose keyframes per rule on every recon and print the coverage table."""
    results = []
    for config_path in args.recons:
        config, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
        synth = json.loads((Path(config.pipeline.datamanager.data) / "synth.json").read_text())
        performance = sorted(synth["performance"], key=lambda frame: frame["timestep_index"])
        parameters = torch.tensor([[frame[name] for name in PARAMETERS] for frame in performance])
        codes = pipeline.model.get_frame_embeddings()
        datamanager = pipeline.datamanager
        for rule in args.rules:
            selection = dataclasses.replace(KeyframeSelectionConfig(), n_time=args.n_time, rule=rule)
            keyframes = avatar_keyframes(codes, datamanager.train_dataset, datamanager.eval_dataset, selection)
            rows = sorted({k.timestep_index for k in keyframes})
            results.append(
                {
                    "capture": str(config.pipeline.datamanager.data),
                    "frames": len(performance),
                    "rule": rule,
                    "keyframes": rows,
                    **coverage(parameters, rows),
                }
            )
    header = ["capture", "frames", "rule", "keyframes", *PARAMETERS, "mean dist", "worst dist", "min gap"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        cells = [Path(r["capture"]).name, r["frames"], r["rule"], " ".join(map(str, r["keyframes"]))]
        cells += [f"{r['reach'][name]:.2f}" for name in PARAMETERS]
        cells += [f"{r['mean_distance']:.3f}", f"{r['worst_distance']:.3f}", r["shortest_gap"]]
        print("| " + " | ".join(map(str, cells)) + " |")
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(tyro.cli(CoverageArgs))
