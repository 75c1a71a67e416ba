"""Errors the user can act on: each names the file, line or field at fault."""


class RlaifError(Exception):
    """A problem with the user's input or environment, reported without a traceback by the CLI."""


class ConfigError(RlaifError):
    """A pipeline config, rubric, model reference or dataset is invalid."""
