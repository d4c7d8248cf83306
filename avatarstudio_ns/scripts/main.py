"""The ``avatarstudio`` command: one tyro subcommand per tool.

Each subcommand is a config dataclass with a ``main()`` method, defined in its own module here.

Python runs ``avatarstudio_ns/__init__.py`` before this module's imports load nerfstudio, so the filters of
``avatarstudio_ns.warnings_filter`` already keep the dependencies' own warnings (torch.jit.script deprecation at
nerfstudio's import, torch indexing deprecations from nerfstudio's cameras, ...) off the command's output.
"""

from __future__ import annotations

import tyro

from avatarstudio_ns.scripts.ablate import AblateCommand
from avatarstudio_ns.scripts.bench.command import BenchCommand
from avatarstudio_ns.scripts.demo import DemoCommand
from avatarstudio_ns.scripts.eval_edits import EvalCommand
from avatarstudio_ns.scripts.personalize import PersonalizeCommand
from avatarstudio_ns.scripts.suite import SuiteCommand
from avatarstudio_ns.scripts.synth import SynthCommand
from avatarstudio_ns.scripts.train_builtin import TrainBuiltinCommand
from avatarstudio_ns.scripts.video import VideoCommand

SUBCOMMANDS = {
    "demo": DemoCommand,
    "personalize": PersonalizeCommand,
    "synth": SynthCommand,
    "video": VideoCommand,
    "eval": EvalCommand,
    "ablate": AblateCommand,
    "suite": SuiteCommand,
    "bench": BenchCommand,
    "train-builtin": TrainBuiltinCommand,
}


def entrypoint() -> None:
    """Parse the command line and run the chosen subcommand."""
    command = tyro.extras.subcommand_cli_from_dict(SUBCOMMANDS, description="AvatarStudio tools for nerfstudio.")
    command.main()


if __name__ == "__main__":
    entrypoint()
