"""OpenAI chat completions, and any server that speaks them (vLLM, llama.cpp, ...).

Reads the verdict from the first token's ``top_logprobs`` (``read: label_probs``), from a
JSON-schema-constrained answer (``read: json``), or from free text (``read: parse``).
"""

from __future__ import annotations

import json
from typing import Any

import openai

from rlaif.judges.api import ApiJudge, with_usage
from rlaif.judges.base import Verdict
from rlaif.judges.openai_batches import OpenAIBatches
from rlaif.judges.verdicts import from_label_logprobs, read_text
from rlaif.models.endpoints import openai_models


class OpenAIJudge(ApiJudge):
    kind = "openai"
    official_url = "https://api.openai.com/v1"
    base_url_env = "OPENAI_BASE_URL"
    read_modes = ("label_probs", "json", "parse")
    transient_errors = (openai.APIConnectionError, openai.APIResponseValidationError)
    unreachable_errors = (openai.APIConnectionError,)
    slow_errors = (openai.APITimeoutError,)

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.cfg.base_url,
            timeout=self.cfg.timeout_s,
            max_retries=0,
        )

    def _served_models(self) -> list[str]:
        return openai_models(self.cfg.base_url, self.api_key)

    def batch_client(self) -> OpenAIBatches:
        return OpenAIBatches(self)

    def request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The chat-completions body for one request; the batch path sends the same body."""
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        if self.rubric.read == "label_probs":
            body["top_logprobs"] = self.cfg.top_logprobs
        return {**body, **self.read_fields()}

    def read_fields(self) -> dict[str, Any]:
        read = self.rubric.read
        if read == "label_probs":  # one token, read through its top log-probabilities
            return {"max_tokens": 1, "logprobs": True}
        if read == "json":
            schema = {"name": "verdict", "schema": self.rubric.json_schema(), "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        return {}

    async def _call(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> Verdict:
        # The SDK's low-level post (its documented way to any endpoint) with the body as is:
        # ``create`` would first rebuild the body through its type transforms and then the
        # answer into pydantic models, which on a small machine costs more CPU than the HTTP
        # exchange itself. Errors are raised exactly as ``create`` raises them.
        body = await client.post(
            "/chat/completions", body=self.request_body(messages), cast_to=object
        )
        if not isinstance(body, dict):
            raise json.JSONDecodeError("not a JSON object", str(body)[:200], 0)
        return self.read_response(body)

    def read_response(self, response: dict[str, Any]) -> Verdict:
        """A chat completion (its JSON body), online or from a batch's output file, as a
        verdict with usage."""
        usage = response.get("usage") or {}
        tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        choice = response["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if message.get("refusal") or choice.get("finish_reason") == "content_filter":
            verdict = Verdict(
                status="refused",
                raw_output=message.get("refusal") or text,
                error=f"refused (finish_reason={choice.get('finish_reason')})",
            )
        elif self.rubric.read == "label_probs":
            content = (choice.get("logprobs") or {}).get("content")
            top = {t["token"]: t["logprob"] for t in content[0]["top_logprobs"]} if content else {}
            verdict = from_label_logprobs(self.rubric, text, top)
        else:
            verdict = read_text(self.rubric, text)
        return with_usage(self, verdict, *tokens)
