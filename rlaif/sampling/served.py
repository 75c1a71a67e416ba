"""Sampling from a model an OpenAI-compatible server already serves (vLLM, SGLang, TGI, a
hosted endpoint): ``sample.backend: openai``.

One chat completion per prompt asks for all ``n`` answers; up to ``max_concurrency`` are in
flight. The ``openai`` SDK owns timeouts and retries (backoff with jitter, ``Retry-After``
honoured, for 408/409/429/5xx and dropped connections); an answer that would fail for every
request alike (401, 404: wrong key or model name) stops the stage at once with its reason.
Token counts come from the policy's own tokenizer, since a response's usage counts only all
``n`` answers together. No per-request seed is sent: vLLM's CPU build crashes on one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rlaif.errors import RlaifError
from rlaif.models.endpoints import check_served, openai_models
from rlaif.progress import tqdm
from rlaif.redaction import redact, secret_from_env
from rlaif.sampling.engine import Completion, GenerationParams


class ServedEngine:
    def __init__(self, server: Any, tokenizer_dir: Path | str):
        from rlaif.models.loading import load_tokenizer

        self.server = server
        self.model = server.served_model
        self.api_key = secret_from_env(server.api_key_env, "sample.server")
        self.tokenizer = load_tokenizer(tokenizer_dir)

    def close(self) -> None:
        """Nothing to free: the server keeps the model."""

    def generate(
        self, conversations: list[list[dict[str, str]]], params: GenerationParams
    ) -> list[list[Completion]]:
        return asyncio.run(self._generate(conversations, params))

    async def _generate(
        self, conversations: list[list[dict[str, str]]], params: GenerationParams
    ) -> list[list[Completion]]:
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.server.base_url,
            api_key=self.api_key,
            timeout=self.server.timeout_s,
            max_retries=self.server.max_retries,
        )
        slots = asyncio.Semaphore(self.server.max_concurrency)
        bar = tqdm(total=len(conversations), desc=f"sampling from {self.model}", unit="prompt")

        async def answers(conversation: list[dict[str, str]]) -> list[Completion]:
            async with slots:
                response = await client.chat.completions.create(
                    model=self.model,
                    messages=conversation,
                    n=params.asked,
                    temperature=params.temperature,
                    top_p=params.asked_top_p,
                    max_tokens=params.max_new_tokens,
                )
            bar.update(1)
            got = sorted(response.choices, key=lambda c: c.index)
            return [self._completion(c) for c in got] * (params.n // params.asked)

        try:
            return await asyncio.gather(*(answers(c) for c in conversations))
        except openai.APIStatusError as exc:
            raise RlaifError(
                f"sample: {self.server.base_url} answered {exc.status_code} for model "
                f"'{self.model}': {redact(str(exc.message))}"
            ) from None
        except openai.APIConnectionError as exc:
            raise RlaifError(
                f"sample: no answer from {self.server.base_url} after "
                f"{self.server.max_retries} retries ({type(exc).__name__}); is the server up?"
            ) from None
        finally:
            bar.close()
            await client.close()

    def _completion(self, choice: Any) -> Completion:
        text = choice.message.content or ""
        return Completion(
            text=text.strip(),
            n_tokens=len(self.tokenizer(text, add_special_tokens=False)["input_ids"]),
            finished=choice.finish_reason == "stop",
        )


def reach(server: Any, model: str) -> None:
    """Preflight for ``sample.backend: openai``: the server answers, takes the key and serves
    ``server.served_model`` (default: ``model``), checked with its model list (no cost)."""
    api_key = secret_from_env(server.api_key_env, "sample.server")
    name = server.served_model or model
    check_served(
        "sample.server",
        server.base_url,
        name,
        server.api_key_env,
        lambda: openai_models(server.base_url, api_key),
        check_model=server.check_model,
    )
