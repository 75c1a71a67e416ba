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

    def _client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self.api_key,
            base_url=self.cfg.base_url,
            timeout=self.cfg.timeout_s,
            max_retries=0,
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

    async def _call(
        self, client: anthropic.AsyncAnthropic, messages: list[dict[str, str]]
    ) -> Verdict:
        # This SDK version no longer takes ``temperature`` as an argument; the API and
        # compatible servers still read it from the body.
        body = self.request_body(messages)
        temperature = body.pop("temperature")
        response = await client.messages.create(**body, extra_body={"temperature": temperature})
        return self.read_response(response)

    def read_response(self, response: Message) -> Verdict:
        """A message, online or from a batch's results, as a verdict with usage."""
        text = "".join(getattr(block, "text", "") for block in response.content)
        usage = response.usage
        tokens = (usage.input_tokens, usage.output_tokens) if usage else (None, None)
        if response.stop_reason == "refusal":
            verdict = Verdict(status="refused", raw_output=text, error="refused")
        else:
            verdict = read_text(self.rubric, text)
        return with_usage(self, verdict, *tokens)
