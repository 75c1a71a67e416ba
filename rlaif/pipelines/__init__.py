"""The shipped pipelines (the top-level ``pipelines/`` folder): ``rlaif run quickstart`` and
``rlaif init`` find them by name, from a checkout or an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

from rlaif.shipped import shipped

BUILTIN = shipped("pipelines")


def builtin_pipelines() -> dict[str, Path]:
    """Each shipped pipeline by its name (the file's stem)."""
    return {p.stem: p for p in sorted(BUILTIN.glob("*.yaml"))}


def accelerate_configs() -> list[Path]:
    """The shipped ``accelerate launch`` configs (``train.accelerate_config``)."""
    return sorted((BUILTIN / "accelerate").glob("*.yaml"))


def accelerate_config_path(ref: str) -> Path:
    """An accelerate config file: ``ref`` itself, or the shipped config of that name."""
    if Path(ref).is_file():
        return Path(ref)
    shipped = {p.stem: p for p in accelerate_configs()}
    if ref in shipped:
        return shipped[ref]
    raise ValueError(
        f"accelerate config '{ref}' is neither a file nor a shipped one ({', '.join(shipped)})"
    )
