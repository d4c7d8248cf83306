"""The train-builtin command with the eye words' part weight on the whole eye (sclera, iris, pupil) instead of the
iris alone. Same arguments as `avatarstudio train-builtin`."""

import tyro

from avatarstudio_ns.builtin import unet_stage
from avatarstudio_ns.data.labels import IRIS, PUPIL, SCLERA
from avatarstudio_ns.scripts.train_builtin import TrainBuiltinCommand

unet_stage.PART_LABELS["eyes"] = (SCLERA, IRIS, PUPIL)
tyro.cli(TrainBuiltinCommand).main()
