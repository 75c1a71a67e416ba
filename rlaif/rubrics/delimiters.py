"""Rubric structure that the data a rubric shows cannot forge.

A rubric marks where the prompt and each answer begin and end with its own delimiters
(``<answer_A>`` ... ``</answer_A>``, ``## Output`` headings). A response that writes
``</answer_A>`` followed by instructions would otherwise close its block and speak as the
rubric. Every value a template prints passes through :class:`Neutraliser`, which escapes
exactly the delimiters the template itself uses: a tag's ``<`` becomes ``&lt;`` and a line
shaped like one of the template's headings or rules gets a leading backslash. Escaping is a
pure function of the template and the data, so renders, their hashes and cache keys stay
deterministic, and rubric authors do nothing to get it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAG = re.compile(r"<\s*/?\s*([A-Za-z_][\w.:-]*)[^<>]*>")
_TAG_START = re.compile(r"<(?=\s*/?\s*([A-Za-z_][\w.:-]*))")
"""In the data, any ``<`` that starts one of the template's tag names, closed or not."""
_HEADING = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+\S", re.MULTILINE)
_RULE = re.compile(r"^[ \t]{0,3}([-=*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
SENTINEL = "\x00{}\x00"
"""What each variable renders as when :func:`unguarded` looks at where it lands."""


@dataclass(frozen=True)
class Neutraliser:
    """Jinja's ``finalize``: applied to every ``{{ value }}`` a template prints."""

    tags: frozenset[str]
    """Lower-cased names of the tags in the template's own text."""
    headings: bool
    rules: frozenset[str]
    """The characters of the template's horizontal rules (``-``, ``=``, ``*``, ``_``)."""

    @classmethod
    def of(cls, *texts: str) -> Neutraliser:
        """The delimiters used by ``texts`` (the template body and its system prompt)."""
        joined = "\n".join(t for t in texts if t)
        return cls(
            tags=frozenset(m.group(1).lower() for m in _TAG.finditer(joined)),
            headings=bool(_HEADING.search(joined)),
            rules=frozenset(m.group(1) for m in _RULE.finditer(joined)),
        )

    def __call__(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        # The substring tests skip the regular expressions for the many values they cannot match.
        if self.tags and "<" in value:
            value = _TAG_START.sub(self._escape_tag, value)
        if self.headings and "#" in value:
            value = _HEADING.sub(lambda m: "\\" + m.group(0), value)
        if self.rules and any(c in value for c in self.rules):
            value = _RULE.sub(
                lambda m: "\\" + m.group(0) if m.group(1) in self.rules else m.group(0), value
            )
        return value

    def _escape_tag(self, match: re.Match[str]) -> str:
        return "&lt;" if match.group(1).lower() in self.tags else "<"


def unguarded(rendered: str, variables: tuple[str, ...]) -> list[str]:
    """The variables of a render made with :data:`SENTINEL` values that do not sit alone
    between an opening tag and its closing tag: data there can blend into the instructions,
    since nothing marks where it ends."""
    out = []
    for var in variables:
        mark = SENTINEL.format(var)
        at = rendered.find(mark)
        if at < 0:
            continue
        before = rendered[:at].rstrip()
        after = rendered[at + len(mark) :].lstrip()
        opening = re.search(r"<\s*([A-Za-z_][\w.:-]*)[^<>/]*>$", before)
        if not (opening and re.match(rf"<\s*/\s*{re.escape(opening.group(1))}\s*>", after)):
            out.append(var)
    return out
