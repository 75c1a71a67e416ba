"""A 2-layer random Llama with the embedded model's tokenizer and chat template: the stages'
plumbing runs for real in seconds, and training on it still moves real weights (the tests'
``tiny_model``, the soft-label benchmark's policy)."""

from __future__ import annotations

from pathlib import Path


def write_tiny_model(target: Path, tokenizer_dir: Path | str) -> Path:
    """Save the model (seeded, so always the same weights) and the tokenizer to ``target``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
