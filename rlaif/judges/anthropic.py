"""Anthropic Messages API, and any server that speaks it (vLLM serves ``/v1/messages``).

The Messages API returns no logprobs, so rubrics here read a JSON answer or a parse rule.
"""

from __future__ import annotations

from typing import Any

import anthropic
from anthropic.types import Message

from rlaif.judges.anthropic_batches import AnthropicBatches
from rlaif.judges.api import ApiJudge, with_usage
from rlaif.judges.base import Verdict
from rlaif.judges.verdicts import read_text


class AnthropicJudge(ApiJudge):
    kind = "anthropic"
    official_url = "https://api.anthropic.com"
    base_url_env = "ANTHROPIC_BASE_URL"
    read_modes = ("json", "parse")
    transient_errors = (anthropic.APIConnectionError, anthropic.APIResponseValidationError)
    unreachable_errors = (anthropic.APIConnectionError,)
    slow_errors = (anthropic.APITimeoutError,)
    cached_input_share = 0.1
    cache_write_shares = {"5m": 1.25, "1h": 2.0}

    def _client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self.api_key,
            base_url=self.cfg.base_url,
            timeout=self.cfg.timeout_s,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(),
        )

    def _served_models(self) -> list[str]:
        with anthropic.Anthropic(
            api_key=self.api_key, base_url=self.cfg.base_url, timeout=10.0, max_retries=2
        ) as client:
            return [m.id for m in client.models.list(limit=1000)]

    def batch_client(self) -> AnthropicBatches:
        return AnthropicBatches(self)

    def request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The Messages API body for one request; the batch path sends the same body."""
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
        }
        if messages and messages[0]["role"] == "system":
            body["system"] = messages[0]["content"]
            messages = messages[1:]
        return {**body, "messages": messages}

    def with_prompt_cache(
        self,
        body: dict[str, Any],
        messages: list[dict[str, str]],
        shared: tuple[int, int],
        sharing: int,
    ) -> dict[str, Any]:
        """``cache_control`` breakpoints where what every request of the rubric shares ends
        and where what the prompt's requests share ends, each where the text before it is
        long enough to be cached (``prompt_cache.min_tokens``); a breakpoint at the end of
        the system message or the few-shot turns when the rubric's shared text is all there.
        The prompt's breakpoint only where its requests pay for the write (:meth:`write_pays`)."""
        floor = self.cfg.prompt_cache.min_tokens * 4
        control = {"type": "ephemeral", **({"ttl": "1h"} if self.cache_ttl() == "1h" else {})}
        if not self.write_pays(sharing):  # cheaper to send them all in full
            shared = (shared[0], shared[0])
        system, turns = body.get("system"), body["messages"]
        last = turns[-1]["content"]
        before = len(system or "") + sum(len(t["content"]) for t in turns[:-1])
        cuts: list[int] = []
        for cut in sorted(set(shared)):  # no block of blank text: the API refuses one
            start = cuts[-1] if cuts else 0
            blank = not last[start:cut].strip() or (last[cut:] and not last[cut:].strip())
            if before + cut >= floor and not blank:
                cuts.append(cut)
        body = dict(body)
        if before >= floor and shared[0] == 0:  # the shared text ends before the last turn
            if len(turns) > 1:
                turns = [*turns[:-2], _blocks(turns[-2], [len(turns[-2]["content"])], control),
                         turns[-1]]  # fmt: skip
            elif system:
                body["system"] = [{"type": "text", "text": system, "cache_control": control}]
        if cuts:
            turns = [*turns[:-1], _blocks(turns[-1], cuts, control)]
        body["messages"] = turns
        return body

    async def _call(self, client: anthropic.AsyncAnthropic, body: dict[str, Any]) -> Verdict:
        # This SDK version no longer takes ``temperature`` as an argument; the API and
        # compatible servers still read it from the body.
        body = dict(body)
        temperature = body.pop("temperature")
        response = await client.messages.create(**body, extra_body={"temperature": temperature})
        return self.read_response(response)

    def read_response(self, response: Message) -> Verdict:
        """A message, online or from a batch's results, as a verdict with usage."""
        text = "".join(getattr(block, "text", "") for block in response.content)
        usage = response.usage
        tokens: tuple[int | None, ...] = (None, None)
        if usage is not None:
            read = usage.cache_read_input_tokens or 0
            written = usage.cache_creation_input_tokens or 0
            # the API counts input after the last breakpoint apart from what the cache held
            tokens = (usage.input_tokens + read + written, usage.output_tokens, read, written)
        if response.stop_reason == "refusal":
            verdict = Verdict(status="refused", raw_output=text, error="refused")
        else:
            verdict = read_text(self.rubric, text)
        return with_usage(self, verdict, *tokens)


def _blocks(turn: dict[str, Any], cuts: list[int], control: dict[str, str]) -> dict[str, Any]:
    """``turn`` with its text in blocks that end at ``cuts``, each of those marked for the
    cache; the text is the same."""
    text, start, blocks = turn["content"], 0, []
    for cut in cuts:
        blocks.append({"type": "text", "text": text[start:cut], "cache_control": control})
        start = cut
    if text[start:]:
        blocks.append({"type": "text", "text": text[start:]})
    return {**turn, "content": blocks}
