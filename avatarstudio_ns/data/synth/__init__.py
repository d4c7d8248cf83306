"""The synthetic head world: a procedural, animated head rendered exactly from a camera rig.

Public entry points: ``render_capture`` (write a capture), ``render_views`` / ``render_frame`` (render
heads in memory, e.g. to make diffusion training data), ``sample_attributes`` and ``caption``.
"""

from avatarstudio_ns.data.synth.attributes import (
    DEFAULT_ATTRIBUTES,
    EYE_COLORS,
    HAIR_COLORS,
    HAIR_STYLES,
    LIP_COLORS,
    SKIN_TONES,
    HeadAttributes,
    caption,
    caption_of,
    sample_attributes,
)
from avatarstudio_ns.data.synth.canonical import load_canonical_points
from avatarstudio_ns.data.synth.capture import CaptureConfig, render_capture
from avatarstudio_ns.data.synth.head import SynthHead
from avatarstudio_ns.data.synth.performance import HeadState, Performance
from avatarstudio_ns.data.synth.render import RenderSettings, SynthViews, render_frame, render_views
from avatarstudio_ns.data.synth.rig import Rig, make_rig

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "EYE_COLORS",
    "HAIR_COLORS",
    "HAIR_STYLES",
    "LIP_COLORS",
    "SKIN_TONES",
    "CaptureConfig",
    "HeadAttributes",
    "HeadState",
    "Performance",
    "RenderSettings",
    "Rig",
    "SynthHead",
    "SynthViews",
    "caption",
    "caption_of",
    "load_canonical_points",
    "make_rig",
    "render_capture",
    "render_frame",
    "render_views",
    "sample_attributes",
]
