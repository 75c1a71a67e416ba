"""Batched sampling with ``transformers.generate``: the fallback that runs on any CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from rlaif.models.devices import resolve_dtype
from rlaif.models.loading import load_tokenizer
from rlaif.progress import tqdm
from rlaif.sampling.engine import Completion, GenerationParams


def load_causal_lm(model: Path | str, dtype: str, *, where: str = "sampling"):
    """Tokenizer (left-padded) and model in ``dtype`` (``auto`` resolved for this machine)."""
    tokenizer = load_tokenizer(model, padding_side="left")
    resolved = getattr(torch, resolve_dtype(dtype, where=where))
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=resolved)
    lm.eval()
    return tokenizer, lm


class TransformersEngine:
    """Batched ``generate`` on a model loaded once for the engine's life."""

    def __init__(self, model: Path | str, dtype: str):
        self.tokenizer, self.lm = load_causal_lm(model, dtype)

    def close(self) -> None:
        del self.lm

    @torch.inference_mode()
    def generate(
        self,
        conversations: list[list[dict[str, str]]],
        params: GenerationParams,
        *,
        desc: str = "sampling",
    ) -> list[list[Completion]]:
        tokenizer, lm = self.tokenizer, self.lm
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        # Longest first: similar lengths share a batch, and an out-of-memory shows up at once.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        per_batch = max(1, params.batch_size // params.n)
        eos = lm.generation_config.eos_token_id
        stop_ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        greedy = params.temperature == 0.0
        per_prompt = params.asked
        torch.manual_seed(params.seed)
        results: list[list[Completion] | None] = [None] * len(texts)
        with tqdm(total=len(texts), desc=desc, unit="prompt") as bar:
            for start in range(0, len(order), per_batch):
                idx = order[start : start + per_batch]
                enc = tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                )
                out = lm.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else params.temperature,
                    top_p=None if greedy else params.top_p,
                    top_k=None,
                    max_new_tokens=params.max_new_tokens,
                    num_return_sequences=per_prompt,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new = out[:, enc["input_ids"].shape[1] :]
                for row, i in enumerate(idx):
                    seqs = new[row * per_prompt : (row + 1) * per_prompt]
                    completions = [_completion(tokenizer, seq, stop_ids) for seq in seqs]
                    results[i] = completions * (params.n // per_prompt)
                bar.update(len(idx))
        return results  # type: ignore[return-value]


def _completion(tokenizer, seq: torch.Tensor, stop_ids: set[int]) -> Completion:
    ids = seq.tolist()
    stop = next((k for k, t in enumerate(ids) if t in stop_ids), None)
    kept = ids if stop is None else ids[:stop]
    return Completion(
        text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
        n_tokens=len(kept),
        finished=stop is not None,
    )
