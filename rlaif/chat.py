"""How a prompt is shown to a model: one function for every stage.

Sampling, the preference dataset's ``prompt`` column, reward scoring, PPO rollouts,
evaluation and the KL estimate all turn a prompt into chat messages here, so a
``sample.system_prompt`` reaches each of them the same way (trained on one conversation,
scored and evaluated on another is a silent bug).
"""

from __future__ import annotations


def chat(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The user's prompt, behind the system prompt when there is one."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": prompt}]


def generation_text(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """The conversation as the model's chat template renders it, ready for the answer."""
    return tokenizer.apply_chat_template(
        chat(prompt, system_prompt), tokenize=False, add_generation_prompt=True
    )
