"""Stage 1: N responses per prompt from the SFT policy.

Prompts are sampled in chunks of ``sample.chunk_size``; with a ``parts_dir`` each finished
chunk is saved at once, so a crashed stage resumes from the last saved chunk. Chunk ``i``
is sampled with seed ``seed + i``: with transformers a resumed stage gives exactly the
rows of an uninterrupted one (vLLM seeds its engine once, so resumed chunks are fresh
draws from the same distribution).
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, concatenate_datasets, load_from_disk

from rlaif.chat import chat
from rlaif.config import SampleConfig
from rlaif.datasets_io import save_atomic
from rlaif.models import resolve_model
from rlaif.sampling import GenerationParams, generate, release


def sample(
    prompts: Dataset, cfg: SampleConfig, *, model: str, parts_dir: Path | None = None
) -> Dataset:
    """Add ``responses`` (N texts), ``n_tokens`` and ``finished`` (stopped at EOS) per prompt."""
    model_path = resolve_model(model, field="model")
    parts = []
    try:
        for index, lo in enumerate(range(0, len(prompts), cfg.chunk_size)):
            part = parts_dir / f"chunk-{index:05d}" if parts_dir else None
            if part is not None and part.exists():
                parts.append(load_from_disk(str(part)))
                continue
            chunk = prompts.select(range(lo, min(lo + cfg.chunk_size, len(prompts))))
            done = _sample_chunk(chunk, cfg, model_path, seed=cfg.seed + index)
            if part is not None:
                save_atomic(done, part)
            parts.append(done)
    finally:
        release()
    return concatenate_datasets(parts) if parts else _sample_chunk(prompts, cfg, model_path, 0)


def _sample_chunk(chunk: Dataset, cfg: SampleConfig, model_path: Path, seed: int) -> Dataset:
    completions = generate(
        model_path,
        [chat(p, cfg.system_prompt) for p in chunk["prompt"]],
        GenerationParams(
            n=cfg.n,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
            dtype=cfg.dtype,
            seed=seed,
        ),
        backend=cfg.backend,
    )
    return (
        chunk.add_column("responses", [[c.text for c in cs] for cs in completions])
        .add_column("n_tokens", [[c.n_tokens for c in cs] for cs in completions])
        .add_column("finished", [[c.finished for c in cs] for cs in completions])
    )
