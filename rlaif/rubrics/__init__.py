"""Jinja rubrics with YAML front matter: the shipped ones (top-level ``rubrics/``), a user's
found by path or by name on the search path."""

from rlaif.rubrics.loading import (
    BUILTIN,
    EXAMPLE,
    check_rubric,
    find_rubric,
    list_rubrics,
    load_rubric,
    rubric_dirs,
)
from rlaif.rubrics.rubric import Rubric

__all__ = [
    "BUILTIN",
    "EXAMPLE",
    "Rubric",
    "check_rubric",
    "find_rubric",
    "list_rubrics",
    "load_rubric",
    "rubric_dirs",
]
