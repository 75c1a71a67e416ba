"""What changes a result, declared on each config field.

A field's annotation carries a marker where it is not simply part of every result it feeds:

- :class:`NoResult`: where work runs, where metrics go, what preflight asks. Out of the run
  directory's hash and every stage's fingerprint.
- :class:`Added`: a field that came after run directories were named by the hash. Left out
  while at its default, so upgrading rlaif keeps existing run directories current.
- :class:`OutOfFingerprints`: part of the run's name but not of a stage's result as its own
  setting (a budget decides how far a stage gets, not what it makes; a calibration file's
  content is covered by the stage that applies it).
- :class:`Verbatim`: the named fields of the models it holds are kept whatever their markers,
  where the hash has always kept them (the monitor's judges).

:func:`result_dump` walks any model by these markers: the run's hash
(:meth:`rlaif.config.PipelineConfig.hash`) and the stages' fingerprints
(:mod:`rlaif.run.runner`) both read the config through it, so a new field is declared once,
where it is defined, e.g. ``report_to: Annotated[list[str], NoResult()] = ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class NoResult:
    """Changes no result: out of the hash and every fingerprint."""


@dataclass(frozen=True)
class Added:
    """Came after runs were named by the hash: left out of both while at its default."""


@dataclass(frozen=True)
class OutOfFingerprints:
    """In the run directory's hash, out of the stages' fingerprints."""


class Verbatim:
    """The named fields of the models it holds are kept whatever their markers say."""

    def __init__(self, *fields: str):
        self.fields = frozenset(fields)


def result_dump(model: BaseModel, *, fingerprint: bool = False) -> dict[str, Any]:
    """``model`` as JSON, less what its fields declare changes no result: the run's hash
    reads this, and with ``fingerprint`` the stages' fingerprints do."""
    data = model.model_dump(mode="json")
    _prune(model, data, fingerprint)
    return data


def _prune(
    model: BaseModel, data: dict[str, Any], fingerprint: bool, keep: frozenset[str] = frozenset()
) -> None:
    for name, field in type(model).model_fields.items():
        marks = {type(mark): mark for mark in field.metadata}
        if name in keep:
            continue
        if NoResult in marks or (fingerprint and OutOfFingerprints in marks):
            data.pop(name, None)
        elif Added in marks and data.get(name) == _default_json(field):
            data.pop(name)
        else:
            value = getattr(model, name)
            inner = marks[Verbatim].fields if Verbatim in marks else frozenset()
            items = value if isinstance(value, list | tuple) else [value]
            dumped = data[name] if isinstance(value, list | tuple) else [data[name]]
            for item, item_data in zip(items, dumped, strict=True):
                if isinstance(item, BaseModel):
                    _prune(item, item_data, fingerprint, inner)


def _default_json(field: FieldInfo) -> Any:
    default = field.get_default(call_default_factory=True)
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else default
