"""Typed configuration of a mixed reward (``reward:``): weighted components, each a judge's
score or a verifiable check, each normalised within its GRPO group or left raw."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rlaif.config.base import Strict


class _Component(Strict):
    name: str | None = None
    """How the component is logged (``reward/<name>``); default: its kind, or its judge's
    name."""
    weight: float = 1.0
    """Its share of the total: the total is the weighted sum of the components."""
    normalize: Literal["raw", "group"] = "raw"
    """``group``: the component minus its group's mean, over the group's standard deviation
    (the completions of one prompt in a GRPO step), before it is weighted; ``raw``: as is."""

    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class JudgeComponent(_Component):
    """A judge of ``judge.judges`` scoring each completion: a pairwise or listwise judge
    against the reference answer where there is one, else ranking the group's completions (a
    pairwise rubric then ranks with the shipped ``listwise`` rubric, one call per order
    shown); a pointwise rubric's score, or a checklist's weighted share, needs no
    reference."""

    kind: Literal["judge"] = "judge"
    judge: str
    """The name of a judge in ``judge.judges``."""
    scale: Literal["unit", "rubric"] = "unit"
    """A pointwise rubric's score mapped onto 0-1 (``unit``: its lowest score is 0, its
    highest 1), or on the rubric's own scale (``rubric``, e.g. 1-5). Comparisons and
    checklists are on 0-1 already."""

    def label(self) -> str:
        return self.name or self.judge


class ExactAnswerComponent(_Component):
    """1 when the completion's final answer equals the reference's, else 0: the last
    ``\\boxed{...}``, else what follows the last "answer is"/"Answer:", else the last number;
    numbers compare as numbers (``1,000`` = ``1000.0`` = ``1e3``; ``3/4`` = ``0.75``;
    ``50%`` = ``0.5``), text after case and spacing are folded."""

    kind: Literal["exact_answer"] = "exact_answer"
    tolerance: float = Field(default=1e-6, ge=0)
    """Relative tolerance for numbers."""


class RegexComponent(_Component):
    """1 when the pattern is found in the completion (RE2: time linear in its length)."""

    kind: Literal["regex"] = "regex"
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        from rlaif.rubrics.checklists import compile_regex

        compile_regex(pattern)
        return pattern


class JsonSchemaComponent(_Component):
    """1 when the completion (or the first JSON object or array in it, or in a fenced code
    block) is JSON valid against the schema, else 0."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any] = Field(alias="schema")
    """A JSON Schema (draft 2020-12 or an earlier one its ``$schema`` names), given as
    ``schema:``."""

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return schema


class PythonComponent(_Component):
    """A user's ``module:function(prompt, completion, reference) -> float`` run in a separate
    process with a time and a memory limit: a check that hangs, crashes or runs out of memory
    costs that completion this component (``on_failure``), with the reason recorded, never
    the training step."""

    kind: Literal["python"] = "python"
    callable: str = Field(pattern=r"^[\w.]+:\w+$")
    timeout_s: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=2048, ge=64)
    workers: int = Field(default=2, ge=1)
    """Processes that run the checks side by side."""
    on_failure: float = 0.0
    """The component's value for a completion whose check failed to give one."""


RewardComponent = Annotated[
    JudgeComponent | ExactAnswerComponent | RegexComponent | JsonSchemaComponent | PythonComponent,
    Field(discriminator="kind"),
]


class RewardConfig(Strict):
    """What a reward is made of, for rlaif's own GRPO and for the trainers' adapters
    (:mod:`rlaif.rewards`). Without components, rlaif's GRPO rewards P(completion beats the SFT
    model's answers) by every judge, and an adapter scores with the first judge."""

    components: list[RewardComponent] = Field(default_factory=list)
    reference_column: str | None = None
    """The dataset column an adapter reads the reference answer from (TRL passes every
    column); default: ``prompts.reference_column``, else none."""
    on_failure: Literal["neutral", "null", "error"] = "neutral"
    """An answer a judge component could not score (the judge failed, the budget is spent):
    ``neutral`` gives the component its middle value (0.5 on 0-1) and counts it; ``null``
    gives ``None`` (TRL then leaves the reward function out of that completion's sum);
    ``error`` raises, failing the step."""

    @model_validator(mode="after")
    def _names_are_unique(self) -> RewardConfig:
        labels = [c.label() for c in self.components]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(
                f"reward.components: {', '.join(twice)} named twice; give each a `name`"
            )
        return self
