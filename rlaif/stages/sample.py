"""Stage 1: N responses per prompt from the SFT policy.

Prompts are sampled in chunks of ``sample.chunk_size``; with a ``parts_dir`` each finished
chunk is saved at once, so a crashed stage resumes from the last saved chunk. Chunk ``i``
is sampled with seed ``seed + i``: with transformers a resumed stage gives exactly the
rows of an uninterrupted one (vLLM seeds its engine once, so resumed chunks are fresh
draws from the same distribution).
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset, concatenate_datasets, load_from_disk

from rlaif.chat import chat
from rlaif.config import SampleConfig, ServedModelConfig
from rlaif.datasets_io import save_atomic
from rlaif.models import resolve_model
from rlaif.sampling import Completion, Engine, GenerationParams, open_engine

if TYPE_CHECKING:
    from rlaif.stage_table import Run


def step(run: Run) -> dict:
    """The stage in a run: chunks saved under ``samples.parts/`` until the whole is written."""
    parts = run.dir.sample_parts(run.fingerprint("sample"))
    cfg = run.cfg.sample
    if run.start:  # on-policy: the latest trained policy, which only this machine has
        out = sample(run.train_prompts, cfg.local(), model=str(run.start.path), parts_dir=parts)
    else:
        out = sample(run.train_prompts, cfg, model=run.cfg.model, parts_dir=parts)
    run.save("sample", out)
    shutil.rmtree(parts.parent)
    finished = [f for fs in out["finished"] for f in fs]
    return {"prompts": len(out), "responses": len(finished), "truncated": finished.count(False)}


def sample(
    prompts: Dataset, cfg: SampleConfig, *, model: str, parts_dir: Path | None = None
) -> Dataset:
    """Add ``responses`` (N texts), ``n_tokens`` and ``finished`` (stopped at EOS) per prompt.

    The engine is opened once, for the first chunk not already saved, and kept for the rest."""
    model_path = resolve_model(model, field="model")
    parts = []
    with ExitStack() as stack:
        engine: Engine | None = None
        for index, lo in enumerate(range(0, len(prompts), cfg.chunk_size)):
            part = parts_dir / f"chunk-{index:05d}" if parts_dir else None
            if part is not None and part.exists():
                parts.append(load_from_disk(str(part)))
                continue
            if engine is None:
                engine = stack.enter_context(
                    open_engine(
                        model_path,
                        backend=cfg.backend,
                        dtype=cfg.dtype,
                        seed=cfg.seed + index,
                        gpu_memory_utilization=cfg.gpu_memory_utilization,
                        server=_named(cfg.server, model),
                    )
                )
            chunk = prompts.select(range(lo, min(lo + cfg.chunk_size, len(prompts))))
            done = _sample_chunk(engine, chunk, cfg, seed=cfg.seed + index)
            if part is not None:
                save_atomic(done, part)
            parts.append(done)
    return concatenate_datasets(parts) if parts else _with_completions(prompts, [])


def _sample_chunk(engine: Engine, chunk: Dataset, cfg: SampleConfig, seed: int) -> Dataset:
    completions = engine.generate(
        [chat(p, cfg.system_prompt) for p in chunk["prompt"]],
        GenerationParams(
            n=cfg.n,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
            seed=seed,
        ),
    )
    return _with_completions(chunk, completions)


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
