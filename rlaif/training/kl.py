"""KL(policy || SFT) on prompts, estimated from the policy's own samples, for evaluation: the
two models loaded from their folders (the estimate itself is
:func:`rlaif.training.logprobs.sampled_kl`, which ``train.monitor`` also uses)."""

from __future__ import annotations

from pathlib import Path

import torch

from rlaif.chat import generation_text
from rlaif.models.devices import resolve_dtype
from rlaif.models.loading import load_tokenizer
from rlaif.training.logprobs import sampled_kl


@torch.no_grad()
def estimate_kl(
    policy_path: Path | str,
    reference_path: Path | str,
    prompts: list[str],
    *,
    samples: int = 2,
    max_new_tokens: int = 48,
    seed: int = 0,
    dtype: str = "auto",
    system_prompt: str | None = None,
) -> float:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(policy_path, padding_side="left")
    resolved = getattr(torch, resolve_dtype(dtype, where="KL estimate"))
    policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=resolved).eval()
    reference = AutoModelForCausalLM.from_pretrained(reference_path, dtype=resolved).eval()
    chats = [generation_text(tokenizer, p, system_prompt) for p in prompts]
    enc = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    return sampled_kl(
        policy, reference, enc, tokenizer, max_new_tokens=max_new_tokens, samples=samples
    )
