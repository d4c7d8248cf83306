"""avatarstudio_ns: text-driven editing of dynamic 3D head avatars, as a nerfstudio plugin."""

from avatarstudio_ns.checkpoints import allow_numpy_in_weights_only_load

__version__ = "0.1.0"

# nerfstudio imports every registered plugin before it loads a checkpoint, so doing this at import
# time makes ns-viewer / ns-render / ns-eval / ns-export work with torch >= 2.6 (weights_only=True).
allow_numpy_in_weights_only_load()
