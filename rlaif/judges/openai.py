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
from rlaif.judges.prompt_cache import prefix_group
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
    cached_input_share = 0.5  # the older model families; newer ones read at 0.1-0.25x
    cache_write_shares = {"5m": 1.0, "1h": 1.0}  # no premium: OpenAI caches by itself

    def _client(self) -> openai.AsyncOpenAI:
        # aiohttp under the SDK: a quarter less client CPU per request than its default httpx
        # transport, which on a small machine is what bounds judgments per second.
        return openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.cfg.base_url,
            timeout=self.cfg.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
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

    def with_prompt_cache(
        self,
        body: dict[str, Any],
        messages: list[dict[str, str]],
        shared: tuple[int, int],
        sharing: int,
    ) -> dict[str, Any]:
        """A ``prompt_cache_key`` naming what the prompt's requests share: OpenAI caches the
        prefix by itself, and the key sends those requests to the same cache."""
        return {**body, "prompt_cache_key": prefix_group(messages, shared[1])}

    async def _call(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> Verdict:
        # The SDK's low-level post (its documented way to any endpoint) with the body as is:
        # ``create`` would first rebuild the body through its type transforms and then the
        # answer into pydantic models, which on a small machine costs more CPU than the HTTP
        # exchange itself. Errors are raised exactly as ``create`` raises them.
        answer = await client.post("/chat/completions", body=body, cast_to=object)
        if not isinstance(answer, dict):
            raise json.JSONDecodeError("not a JSON object", str(answer)[:200], 0)
        return self.read_response(answer)

    def read_response(self, response: dict[str, Any]) -> Verdict:
        """A chat completion (its JSON body), online or from a batch's output file, as a
        verdict with usage."""
        usage = response.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        tokens = usage.get("prompt_tokens"), usage.get("completion_tokens"), cached
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
