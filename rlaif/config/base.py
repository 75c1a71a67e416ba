"""What every typed config shares: unknown keys are errors, values are frozen; YAML read with
duplicate keys refused and each key's line kept for error messages."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
"""``auto`` is resolved for the hardware by :func:`rlaif.models.devices.resolve_dtype`."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    would silently keep the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int | float | bool):
                continue  # an unhashable key: the base loader names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key '{key}' (first given on line {seen[key]})",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def key_lines(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    out: dict[tuple, int] = {}

    def walk(node: yaml.Node, prefix: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, key.value)
                out[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[(*prefix, i)] = item.start_mark.line + 1
                walk(item, (*prefix, i))

    if root is not None:
        walk(root, ())
    return out
