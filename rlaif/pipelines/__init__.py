"""The starter pipelines shipped inside the package: ``rlaif run quickstart`` and ``rlaif init``
find them by name, from a checkout or an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

BUILTIN = Path(__file__).resolve().parent


def builtin_pipelines() -> dict[str, Path]:
    """Each shipped pipeline by its name (the file's stem)."""
    return {p.stem: p for p in sorted(BUILTIN.glob("*.yaml"))}


def accelerate_configs() -> list[Path]:
    """The shipped ``accelerate launch`` configs (``train.accelerate_config``)."""
    return sorted((BUILTIN / "accelerate").glob("*.yaml"))
