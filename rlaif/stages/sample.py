"""Stage 1: N responses per prompt from the SFT policy.

Prompts are sampled in chunks of ``sample.chunk_size``; with a ``parts_dir`` each finished
chunk is saved at once as a parquet shard (by either executor), so a crashed stage resumes
from the last saved chunk, on Ray or here. Chunk ``i`` is sampled with seed ``seed + i``:
with transformers a resumed stage gives exactly the rows of an uninterrupted one (vLLM seeds
its engine once, so resumed chunks are fresh draws from the same distribution).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset, concatenate_datasets

from rlaif.chat import chat
from rlaif.config import SampleConfig, ServedModelConfig
from rlaif.executors.config import RayConfig
from rlaif.models.loading import resolve_model
from rlaif.run.datasets_io import load_shard, save_shard
from rlaif.sampling import open_engine
from rlaif.sampling.engine import Completion, generation_params

if TYPE_CHECKING:
    from rlaif.run.context import Run


def step(run: Run) -> dict:
    """The stage in a run: chunks saved under ``samples.parts/`` until the whole is written."""
    parts = run.dir.sample_parts(run.fingerprint("sample"))
    cfg = run.cfg.sample
    if run.start:  # on-policy: the latest trained policy, which only this machine has
        out = sample(run.train_prompts, cfg.local(), model=str(run.start.path), parts_dir=parts)
    else:
        ray = run.cfg.ray_executor()
        out = sample(run.train_prompts, cfg, model=run.cfg.model, parts_dir=parts, ray=ray)
    run.save("sample", out)
    shutil.rmtree(parts.parent)
    finished = [f for fs in out["finished"] for f in fs]
    return {"prompts": len(out), "responses": len(finished), "truncated": finished.count(False)}


def sample(
    prompts: Dataset,
    cfg: SampleConfig,
    *,
    model: str,
    parts_dir: Path | None = None,
    ray: RayConfig | None = None,
) -> Dataset:
    """Add ``responses`` (N texts), ``n_tokens`` and ``finished`` (stopped at EOS) per prompt.

    Chunks already saved are read back; the rest are sampled here (one engine, opened for
    the first of them) or, with ``ray``, by Ray actors, and each is saved as it finishes."""
    model_path = resolve_model(model, field="model")
    cfg = cfg.model_copy(update={"server": _named(cfg.server, model)})
    chunks, parts = {}, {}
    for index, lo in enumerate(range(0, len(prompts), cfg.chunk_size)):
        part = parts_dir / f"chunk-{index:05d}.parquet" if parts_dir else None
        if part is not None and part.exists():
            parts[index] = load_shard(part)
        else:
            chunks[index] = prompts.select(range(lo, min(lo + cfg.chunk_size, len(prompts))))
    conversations = {
        i: [chat(p, cfg.system_prompt) for p in chunk["prompt"]] for i, chunk in chunks.items()
    }
    if ray is not None:
        from rlaif.executors.ray_data import sample_chunks

        sampled = sample_chunks(ray, model_path, cfg, conversations)
    else:
        sampled = _sample_here(model_path, cfg, conversations)
    for index, completions in sampled:
        parts[index] = _with_completions(chunks[index], completions)
        if parts_dir is not None:
            save_shard(parts[index], parts_dir / f"chunk-{index:05d}.parquet")
    ordered = [parts[i] for i in sorted(parts)]
    return concatenate_datasets(ordered) if ordered else _with_completions(prompts, [])


def _sample_here(
    model: Path, cfg: SampleConfig, chunks: dict[int, list]
) -> Iterator[tuple[int, list[list[Completion]]]]:
    """Each chunk in turn with one engine, opened for the first (chunk ``i`` with seed
    ``seed + i``, so a resumed stage samples as an uninterrupted one)."""
    if not chunks:
        return
    first = min(chunks)
    with open_engine(
        model,
        backend=cfg.backend,
        dtype=cfg.dtype,
        seed=cfg.seed + first,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        server=cfg.server,
    ) as engine:
        for index, conversations in sorted(chunks.items()):
            yield index, engine.generate(conversations, generation_params(cfg, cfg.seed + index))


def _with_completions(rows: Dataset, completions: list[list[Completion]]) -> Dataset:
    return (
        rows.add_column("responses", [[c.text for c in cs] for cs in completions])
        .add_column("n_tokens", [[c.n_tokens for c in cs] for cs in completions])
        .add_column("finished", [[c.finished for c in cs] for cs in completions])
    )


def _named(server: ServedModelConfig | None, model: str) -> ServedModelConfig | None:
    """The server, with the name it knows the model by (default: the pipeline's name)."""
    if server is None or server.served_model:
        return server
    return server.model_copy(update={"served_model": model})
