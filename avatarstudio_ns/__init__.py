"""avatarstudio_ns: text-driven editing of dynamic 3D head avatars, as a nerfstudio plugin."""

from avatarstudio_ns.compat import allow_numpy_in_weights_only_load, use_bundled_ffmpeg

__version__ = "0.1.0"

allow_numpy_in_weights_only_load()
use_bundled_ffmpeg()
