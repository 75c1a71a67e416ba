"""Run by ``tests/evidence/test_vllm_engines.py`` in a fresh process (an in-process vLLM engine
changes torch's threading for the whole process, which later tests should not inherit).

Two PPO steps with vLLM rollouts and a large learning rate on the embedded model, then the
greedy continuation of one prompt from the engine (after its last weight sync), from the
saved policy and from the SFT model, printed as one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM

from rlaif.config import PPOConfig
from rlaif.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_model
from rlaif.training.ppo import train_ppo
from rlaif.training.rollouts import VllmRollouts, chat_texts

PROMPT = "Tell me about cats."
GREEDY_TOKENS = 12


def main(output_dir: Path) -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    model = Path(resolve_model(DEFAULT_MODEL))
    cfg = PPOConfig(
        steps=2,
        rollout_batch_size=4,
        minibatch_size=4,
        max_new_tokens=8,
        learning_rate=1e-4,
        rollout_backend="vllm",
        vllm_dtype="float32",
    )
    tokenizer = load_tokenizer(model, padding_side="left")
    engine = VllmRollouts(model, tokenizer, cfg, seed=0)
    prompts = Dataset.from_dict({"prompt": [PROMPT, "What is rain?", "Name a color.", "Hi!"]})
    log = train_ppo(
        prompts,
        cfg,
        model=str(model),
        reward_fn=lambda _, responses: [-len(r) / 20 for r in responses],
        output_dir=output_dir,
        rollouts=engine,
    )
    ids = tokenizer(chat_texts(tokenizer, [PROMPT])[0], add_special_tokens=False)["input_ids"]
    out = engine.llm.generate(
        [TokensPrompt(prompt_token_ids=ids)],
        SamplingParams(temperature=0.0, max_tokens=GREEDY_TOKENS),
        use_tqdm=False,
    )
    result = {"steps": list(log["step"]), "vllm": list(out[0].outputs[0].token_ids)}
    for name, path in (("policy", output_dir / "model"), ("sft", model)):
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        greedy = lm.generate(
            torch.tensor([ids]),
            do_sample=False,
            max_new_tokens=GREEDY_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
        )
        result[name] = greedy[0, len(ids) :].tolist()
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
