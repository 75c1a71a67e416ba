"""Reading what a trainer sends with the policy's chat template: the response without special
tokens, the user's words (or conversation) inside a templated prompt, and where a response
starts in a query whose prompt the trainer cut or left out."""

from __future__ import annotations

import itertools
from typing import Any

from rlaif.chat import ROLES, Prompt, conversation_error


class TurnText:
    """Reading what a trainer sends with the policy's chat template: the response without
    special tokens, the user's text inside a templated prompt, and the split of a query that
    comes without its prompt."""

    MARK = "\u2063rlaif-user-text\u2063"
    TURNS = tuple(f"\u2063rlaif-turn-{n}\u2063" for n in range(3))

    def __init__(self, tokenizer: Any):
        special = {t for t in tokenizer.all_special_tokens if t} | {tokenizer.eos_token or ""}
        self.special = sorted(special - {""}, key=len, reverse=True)
        self.before = self.after = ""
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": self.MARK}], tokenize=False, add_generation_prompt=True
            )
            self.before, _, self.after = rendered.partition(self.MARK)
        # what opens the user's turn: ``before`` from its last special token on; and what
        # opens the answer: ``after`` from its last one on (its header, without the end of the
        # user's turn before it)
        cuts = [self.before.rfind(t) for t in self.special if t in self.before]
        self.user_start = self.before[max(cuts) :] if cuts else ""
        cuts = [self.after.rfind(t) for t in self.special if t in self.after]
        self.answer_start = self.after[max(cuts) :] if cuts else self.after
        # what the template puts between a user's turn and the answer, and between an answer
        # and the next user's turn: how a templated conversation splits back into its turns
        self.to_answer = self.to_user = ""
        if getattr(tokenizer, "chat_template", None):
            probe = tokenizer.apply_chat_template(
                [{"role": r, "content": m} for r, m in zip(ROLES * 2, self.TURNS, strict=False)],
                tokenize=False,
                add_generation_prompt=True,
            )
            at = [probe.find(m) for m in self.TURNS]
            if -1 not in at and at == sorted(at):
                self.to_answer = probe[at[0] + len(self.TURNS[0]) : at[1]]
                self.to_user = probe[at[1] + len(self.TURNS[1]) : at[2]]

    def clean(self, text: str) -> str:
        for token in self.special:
            text = text.replace(token, "")
        return text.strip()

    def prompt(self, prompt: str) -> Prompt:
        """What the user said in a prompt the template rendered: their words, or the
        conversation when it holds earlier turns (the trainer's system prompt left out); any
        other prompt as it is."""
        if not (self.after and prompt.endswith(self.after)):
            return self.clean(prompt)
        prompt = prompt[: -len(self.after)]
        if not (self.user_start and self.user_start in prompt):
            return self.clean(prompt)
        first = prompt.find(self.user_start) + len(self.user_start)
        last = prompt.rfind(self.user_start) + len(self.user_start)
        if first == last or not (self.to_answer and self.to_user):
            return self.clean(prompt[last:])
        turns, rest = [], prompt[first:]
        for role in itertools.cycle(ROLES):
            end = self.to_answer if role == "user" else self.to_user
            content, found, rest = rest.partition(end)
            turns.append({"role": role, "content": self.clean(content)})
            if not found:
                break
        if turns[-1]["role"] != "user" or conversation_error(turns) is not None:
            return self.clean(prompt[last:])  # a turn the template wrote otherwise
        return turns

    def split(self, query: str) -> tuple[str, str]:
        """(prompt, response) of a query sent without its prompt."""
        if not self.after or self.after not in query:
            raise ValueError(
                "'query' without 'prompts': the query does not hold the chat template's "
                f"generation prompt {self.after!r}, so the response cannot be told from the prompt"
            )
        at = query.rfind(self.after)
        return query[: at + len(self.after)], query[at + len(self.after) :]

    def response(self, query: str, prompt: str) -> str:
        """The response in ``query`` (prompt and response as a trainer decoded them), its
        prompt being ``prompt``. A trainer that cut a long prompt from the left (OpenRLHF keeps
        its last ``max_len - max_new_tokens`` tokens) still sends the whole prompt: the query
        then starts with the prompt's tail, and the response begins where that tail (which
        ends with the template's generation prompt) first ends."""
        if query.startswith(prompt):
            return query[len(prompt) :]
        for tail in (prompt[-256:], prompt[-64:], self.after, self.answer_start):
            if tail and len(tail) < len(prompt) and tail in query:
                return query[query.index(tail) + len(tail) :]
        return query
