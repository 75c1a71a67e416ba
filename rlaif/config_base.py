"""What every typed config shares: unknown keys are errors, values are frozen."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
"""``auto`` is resolved for the hardware by :func:`rlaif.devices.resolve_dtype`."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
