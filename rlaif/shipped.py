"""Where the shipped rubrics and pipelines are.

They live once, in the checkout's top-level ``rubrics/`` and ``pipelines/`` folders, where a user
who opens the repository finds them. The wheel build maps those folders into the package as
``rlaif/_shipped/`` (``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml), so an
installed rlaif finds them beside its code and a checkout finds them beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(folder: str) -> Path:
    """The shipped ``rubrics`` or ``pipelines`` folder: the wheel's copy, else the checkout's."""
    for place in (_PACKAGE / "_shipped" / folder, _PACKAGE.parent / folder):
        if place.is_dir():
            return place
    raise FileNotFoundError(
        f"the shipped '{folder}' folder is neither in the installed package "
        f"({_PACKAGE / '_shipped' / folder}) nor beside it in a checkout "
        f"({_PACKAGE.parent / folder}): reinstall rlaif"
    )
