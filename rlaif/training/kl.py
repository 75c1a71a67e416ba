"""KL(policy || SFT) on prompts, estimated from the policy's own samples.

KL = E_{y ~ policy}[log policy(y|x) - log sft(y|x)], summed over response tokens and
averaged over samples at temperature 1 (greedy outputs would bias the estimate).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlaif.chat import generation_text
from rlaif.models.devices import resolve_dtype
from rlaif.models.loading import load_tokenizer
from rlaif.training.ppo import response_logprobs


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
    out = policy.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_k=None,
        top_p=None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=samples,
        pad_token_id=tokenizer.pad_token_id,
    )
    start = enc["input_ids"].shape[1]
    prompt_mask = enc["attention_mask"].repeat_interleave(samples, dim=0)
    ours, mask, attention = response_logprobs(
        policy, out, prompt_mask, start, tokenizer.eos_token_id
    )
    theirs, _, _ = response_logprobs(
        reference, out, prompt_mask, start, tokenizer.eos_token_id, attention=attention
    )
    return float(((ours - theirs) * mask).sum(-1).mean())
