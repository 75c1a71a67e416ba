"""The ``rlaif`` command line: the same entry points as the Python API. ``main`` holds the
pipeline commands, ``cache`` and ``rubrics`` their groups, ``exit_codes`` how a command ends."""

from rlaif.cli.main import app

__all__ = ["app"]
