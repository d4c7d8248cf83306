"""avatarstudio_ns: text-driven editing of dynamic 3D head avatars, as a nerfstudio plugin."""

from avatarstudio_ns.compat import allow_numpy_in_weights_only_load, use_bundled_ffmpeg
from avatarstudio_ns.warnings_filter import silence_dependency_warnings

__version__ = "0.1.0"

# Before any module of the package imports nerfstudio: its import already warns (see warnings_filter.py).
silence_dependency_warnings()
allow_numpy_in_weights_only_load()
use_bundled_ffmpeg()
