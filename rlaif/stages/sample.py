"""Stage 1: N responses per prompt from the SFT policy."""

from __future__ import annotations

from datasets import Dataset

from rlaif.config import SampleConfig
from rlaif.models import resolve_model
from rlaif.sampling import GenerationParams, generate


def conversation(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": prompt}]


def sample(prompts: Dataset, cfg: SampleConfig, *, model: str) -> Dataset:
    """Add ``responses`` (N texts), ``n_tokens`` and ``finished`` (stopped at EOS) per prompt."""
    model_path = resolve_model(model, field="model")
    completions = generate(
        model_path,
        [conversation(p, cfg.system_prompt) for p in prompts["prompt"]],
        GenerationParams(
            n=cfg.n,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
            dtype=cfg.dtype,
            seed=cfg.seed,
        ),
        backend=cfg.backend,
    )
    return (
        prompts.add_column("responses", [[c.text for c in cs] for cs in completions])
        .add_column("n_tokens", [[c.n_tokens for c in cs] for cs in completions])
        .add_column("finished", [[c.finished for c in cs] for cs in completions])
    )
