"""Log-probabilities of responses under a model, and the KL between two models estimated from
one's samples: one copy, used by PPO, the evaluation's KL and ``train.monitor``."""

from __future__ import annotations

from typing import Any

import torch


def forward(model, value_head, ids, attention, start):
    """Log-probabilities of ``ids[:, start:]``, per-token entropy and values."""
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    out = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=value_head is not None,
    )
    logits = out.logits[:, start - 1 : -1].float()
    logp_all = logits.log_softmax(-1)
    logprobs = logp_all.gather(-1, ids[:, start:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, start - 1 : -1]
        values = value_head(hidden.to(value_head.weight.dtype)).float().squeeze(-1)
    return logprobs, entropy, values


def response_mask(response: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 on response tokens up to and including the first end token, 0 after it."""
    is_eos = response == eos_token_id
    return ((is_eos.cumsum(-1) - is_eos.long()) == 0).float()


def response_logprobs(model, ids, prompt_attention, start, eos_token_id, attention=None):
    """Per-token log-probabilities of the responses in ``ids[:, start:]``; returns
    (logprobs, response mask, full attention mask)."""
    mask = response_mask(ids[:, start:], eos_token_id)
    if attention is None:
        attention = torch.cat([prompt_attention, mask.long()], dim=1)
    logprobs, _, _ = forward(model, None, ids, attention, start)
    return logprobs, mask, attention


@torch.no_grad()
def sampled_kl(
    policy: Any,
    reference: Any,
    enc: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int,
    samples: int = 1,
) -> float:
    """KL(policy || reference) = E_{y ~ policy}[log policy(y|x) - log reference(y|x)], summed
    over each answer's tokens and averaged over ``samples`` answers a prompt, sampled at
    temperature 1 (greedy answers would bias it) from the tokenized prompts ``enc``."""
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
    return float(((ours.float() - theirs.float()) * mask).sum(-1).mean())
