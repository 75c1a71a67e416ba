"""A loaded rubric (:class:`Rubric`): its Jinja template rendered in a sandbox into the messages
a judge is sent, and what its front matter fixed (mode, labels, how a verdict is read).

Prompts and responses are passed as variables, never spliced into template source, so a
response containing ``{{ 7*7 }}`` reaches the judge literally; a misspelt variable is an error
when the rubric loads (:mod:`rlaif.rubrics.loading`). What a template prints cannot forge the
template's own delimiters (:mod:`rlaif.rubrics.delimiters`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from rlaif.chat import Prompt, earlier_turns, last_turn, transcript
from rlaif.errors import ConfigError
from rlaif.rubrics.checklists import CHECKS
from rlaif.rubrics.delimiters import SENTINEL, unguarded

STAND_IN = "\u2063rlaif-stand-in\u2063"
"""What a rendering shows in place of a request's data to find where its text starts to vary."""

PAIRWISE_VARIABLES = ("prompt", "response_a", "response_b")
POINTWISE_VARIABLES = ("prompt", "response")
LISTWISE_VARIABLES = ("prompt", "responses")
"""``responses``: the answers shown, each a mapping with its ``label`` and ``text``."""
CHECKLIST_VARIABLES = ("prompt",)
CHECKLIST_ITEMS_VARIABLES = ("prompt", "response", "items")
"""``items``: the requirements asked about, each a mapping with its ``number`` and ``text``."""
MODES = ("pairwise", "pointwise", "listwise", "checklist", "checklist_items")
CHECKLIST_MODES = ("checklist", "checklist_items")
"""Modes that write a prompt's checklist (``checklist``) or say which of its items an answer
meets (``checklist_items``); both read JSON (:mod:`rlaif.judges.checklists`)."""
LISTWISE_LABELS = tuple("ABCDEFGH")
"""A listwise rubric's labels unless it names its own: the most answers one call shows."""
READ_MODES = ("label_probs", "json", "parse")
"""How a verdict is read: next-token label probabilities, a JSON object ``{"rationale",
"winner"}`` (schema-constrained where the backend can), or a regex over free text."""


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    mode: str
    """``pairwise`` (which of two answers is better), ``pointwise`` (a score for one),
    ``listwise`` (a ranking of several, up to one per label), ``checklist`` (a prompt's
    yes/no requirements) or ``checklist_items`` (which of them an answer meets)."""
    labels: tuple[str, ...]
    """Pairwise: the two labels for first and second; pointwise: the scores, as numbers;
    listwise: one per answer shown, in the order shown."""
    system: str | None
    variables: tuple[str, ...]
    body: str
    path: Path
    sha256: str
    description: str = ""
    read: str = "label_probs"
    pattern: str | None = None
    """For ``read: parse``: a regex whose first group is a label; the last match counts."""
    rationale: bool = True
    """For ``read: json``: ask for a rationale before the verdict."""
    examples: tuple[dict[str, str], ...] = ()
    """Few-shot examples: the template's variables plus the ``verdict`` (a label), shown as
    earlier turns of the conversation."""
    neutralise: bool = True
    """Escape the template's own delimiters in the data it shows; ``false`` only to measure
    what the escaping is worth (``rlaif judge-audit``)."""
    principles: tuple[str, ...] = ()
    """Constitutional rubrics: one principle is drawn per comparison, the same for both
    orders of a pair (so the swap compares like with like), and rendered as ``principle``."""
    _template: object = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def principle_for(self, prompt: str, response_a: str, response_b: str, **_: str) -> str:
        pair = "\x00".join([prompt, *sorted((response_a, response_b))])
        digest = hashlib.sha256(pair.encode()).digest()
        return self.principles[int.from_bytes(digest[:8], "big") % len(self.principles)]

    def label_token_ids(self, tokenizer, *, model: str) -> list[int]:
        """Each label's one token id in ``tokenizer``; a label it splits fails here, before
        any judgment (label probabilities are read off a single next token)."""
        ids = []
        for label in self.labels:
            tokens = tokenizer.encode(label, add_special_tokens=False)
            if len(tokens) != 1:
                raise ConfigError(
                    f"{self.path}: label '{label}' is {len(tokens)} tokens for model '{model}'; "
                    "label-probability judging needs single-token labels"
                )
            ids.append(tokens[0])
        return ids

    def json_schema(self) -> dict:
        """The verdict's schema for ``read: json``; the rationale comes first, so a model that
        writes in order reasons before it decides."""
        properties: dict = {"rationale": {"type": "string"}} if self.rationale else {}
        if self.mode == "pointwise":
            properties["score"] = {"type": "integer", "enum": [int(s) for s in self.scores]}
        elif self.mode == "listwise":
            item = {"type": "string", "enum": list(self.labels)}
            properties["ranking"] = {"type": "array", "items": item}
        elif self.mode == "checklist":
            properties["items"] = {"type": "array", "items": _CHECKLIST_ITEM}
        elif self.mode == "checklist_items":
            answer = {"type": "string", "enum": ["yes", "no"]}
            properties["met"] = {"type": "array", "items": answer}
        else:
            properties["winner"] = {"type": "string", "enum": list(self.labels)}
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    @property
    def scores(self) -> tuple[float, ...]:
        """Pointwise: the numeric value of each label."""
        return tuple(float(label) for label in self.labels)

    @property
    def needs_reference(self) -> bool:
        return "reference" in self.variables

    def messages(
        self,
        prompt: Prompt,
        first: str,
        second: str,
        reference: str | None = None,
        responses: tuple[str, ...] = (),
        items: tuple[str, ...] = (),
    ) -> list[dict[str, str]]:
        """Messages for a judge request: a comparison, (pointwise) a score for ``first``,
        (listwise) a ranking of ``responses`` (of ``first`` and ``second`` without them),
        (checklist) the prompt's checklist, or (checklist_items) which ``items`` ``first``
        meets. A conversation's earlier turns are the ``conversation`` variable where the
        rubric declares it (``prompt`` is then the user's last turn); elsewhere ``prompt`` is
        the whole conversation as a transcript."""
        extra: dict[str, object] = {}
        if "conversation" in self.variables:
            extra["conversation"] = earlier_turns(prompt)
            prompt = last_turn(prompt)
        else:
            prompt = transcript(prompt)
        if self.needs_reference:
            if reference is None:
                raise ConfigError(
                    f"{self.path}: this rubric compares against a reference "
                    "answer; set prompts.reference_column"
                )
            extra["reference"] = reference
        if self.mode == "pointwise":
            return self.render(prompt=prompt, response=first, **extra)
        if self.mode == "checklist":
            return self.render(prompt=prompt, **extra)
        if self.mode == "checklist_items":
            numbered = [{"number": n, "text": t} for n, t in enumerate(items, 1)]
            return self.render(prompt=prompt, response=first, items=numbered, **extra)
        if self.mode == "listwise":
            shown = self.shown(responses or (first, second))
            return self.render(prompt=prompt, responses=shown, **extra)
        return self.render(prompt=prompt, response_a=first, response_b=second, **extra)

    def shared_prefixes(
        self,
        last: str,
        prompt: Prompt,
        reference: str | None = None,
        responses: tuple[str, ...] = (),
        items: tuple[str, ...] = (),
    ) -> tuple[int, int]:
        """How many characters of ``last`` (the last message of this rubric's messages for a
        request) every request through the rubric shares, and every request about the same
        prompt shares: where a provider's prompt cache can end. Each is where ``last`` parts
        from a rendering with stand-ins for what varies, so whatever a template does with the
        answers (a principle chosen from them) ends the shared text where it shows."""
        answers = (STAND_IN,) * len(responses)
        about_prompt = self.messages(prompt, STAND_IN, STAND_IN, reference, answers, items)
        any_prompt = self.messages(
            STAND_IN,
            STAND_IN,
            STAND_IN,
            None if reference is None else STAND_IN,
            answers,
            (STAND_IN,) * len(items),
        )
        per_prompt = len(os.path.commonprefix([last, about_prompt[-1]["content"]]))
        per_rubric = len(os.path.commonprefix([last, any_prompt[-1]["content"]]))
        return min(per_rubric, per_prompt), per_prompt

    def shown(self, responses: tuple[str, ...]) -> list[dict[str, str]]:
        """Listwise: the answers as the template sees them, each with its label."""
        if len(responses) > len(self.labels):
            raise ConfigError(
                f"{self.path}: {len(responses)} answers to rank, but the rubric has "
                f"{len(self.labels)} labels; add labels or sample fewer answers"
            )
        return [{"label": lab, "text": t} for lab, t in zip(self.labels, responses, strict=False)]

    def render(self, **values: object) -> list[dict[str, str]]:
        """Chat messages for one comparison (or one answer, pointwise)."""
        if self.principles and self.mode == "pairwise":
            values = {**values, "principle": self.principle_for(**values)}
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise ConfigError(f"{self.path}: rendering needs {', '.join(missing)}")
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for example in self.examples:  # few-shot: earlier turns with the expected verdicts
            shown = {**values, **{k: v for k, v in example.items() if k != "verdict"}}
            if "conversation" in values:  # an example is a request of its own
                shown["conversation"] = []
            messages.append({"role": "user", "content": self._template.render(**shown).strip()})
            messages.append({"role": "assistant", "content": example["verdict"]})
        messages.append({"role": "user", "content": self._template.render(**values).strip()})
        return messages

    def unguarded_variables(self) -> list[str]:
        """The data variables this template prints outside a ``<tag>...</tag>`` block of
        their own, where a response's text can read as the rubric's instructions."""
        marked: dict[str, object] = {v: SENTINEL.format(v) for v in self.variables}
        if self.mode == "listwise":
            marked["responses"] = self.shown((SENTINEL.format("responses"),) * 2)
        if self.mode == "checklist_items":
            marked["items"] = [{"number": 1, "text": SENTINEL.format("items")}]
        if "conversation" in self.variables:
            marked["conversation"] = [{"role": "user", "content": SENTINEL.format("conversation")}]
        data = tuple(v for v in self.variables if v != "principle")
        if not self.neutralise:
            return list(data)
        return unguarded(self._template.render(**marked), data)


_CHECKLIST_ITEM = {
    "type": "object",
    "properties": {
        "requirement": {"type": "string"},
        "weight": {"type": "integer", "enum": [1, 2, 3]},
        "check": {"type": "string", "enum": ["none", *CHECKS]},
        "value": {"type": "string"},
    },
    "required": ["requirement", "weight", "check", "value"],
    "additionalProperties": False,
}
"""A written item as a checklist rubric's JSON gives it: ``check`` ``none`` leaves it to a
judge; a check's ``value`` comes as text (a number where the check counts)."""
