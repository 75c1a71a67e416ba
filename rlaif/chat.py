"""How a prompt is shown to a model: one function for every stage.

A prompt is one user message (a string) or a conversation: a list of ``{"role", "content"}``
messages, user and assistant turns, ending with the user's. Sampling, the preference
dataset's ``prompt`` column, reward scoring, PPO rollouts, evaluation and the KL estimate all
turn a prompt into chat messages here, so a ``sample.system_prompt`` reaches each of them the
same way (trained on one conversation, scored and evaluated on another is a silent bug).
"""

from __future__ import annotations

from typing import Any

Prompt = str | list[dict[str, str]]
"""One user message, or a conversation ending with the user's turn."""
ROLES = ("user", "assistant")


def chat(prompt: Prompt, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation so far, behind the system prompt when there is one."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, *turns(prompt)]


def turns(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt's messages: the user's one, or the conversation's."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def plain(prompt: Prompt) -> Prompt:
    """A conversation of one user message as its text; any other prompt as it is."""
    if isinstance(prompt, list) and len(prompt) == 1:
        return prompt[0]["content"]
    return prompt


def last_turn(prompt: Prompt) -> str:
    """What the user said last: the text the next answer answers."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def earlier_turns(prompt: Prompt) -> list[dict[str, str]]:
    """The turns before the user's last (none for a single message)."""
    return turns(prompt)[:-1]


def transcript(prompt: Prompt) -> str:
    """The prompt as text, for a rubric or a rule that reads one: the message itself (a
    conversation of one user turn too), or the conversation with each turn's speaker."""
    if len(messages := turns(prompt)) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def prompts_of(conversations: list[list[dict[str, str]]]) -> list[Prompt]:
    """The prompts behind conversations as :func:`chat` makes them (system message dropped):
    texts where every one is a single user message, as a one-message prompt set has them,
    else conversations (a column holds one type)."""
    bare = [[m for m in c if m["role"] != "system"] for c in conversations]
    if all(len(c) == 1 for c in bare):
        return [c[0]["content"] for c in bare]
    return [turns(c) for c in bare]


def conversation_error(value: Any) -> str | None:
    """Why ``value`` is not a conversation a model can continue; None when it is one."""
    if not isinstance(value, list) or not value:
        return "a conversation is a non-empty list of messages"
    for n, message in enumerate(value, 1):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            return f"message {n} must be a mapping with 'role' and 'content', got {message!r}"
        if message["role"] not in ROLES:
            role = message["role"]
            hint = " (set sample.system_prompt instead)" if role == "system" else ""
            return f"message {n}: role {role!r} is not user or assistant{hint}"
        if not isinstance(message["content"], str) or not message["content"].strip():
            return f"message {n}: content must be non-empty text"
        if message["role"] != ROLES[(n - 1) % 2]:
            return f"message {n}: turns alternate user, assistant, user, ... from the user's"
    if value[-1]["role"] != "user":
        return "a conversation ends with the user's turn (the answer continues it)"
    return None


def generation_text(tokenizer, prompt: Prompt, system_prompt: str | None = None) -> str:
    """The conversation as the model's chat template renders it, ready for the answer."""
    return tokenizer.apply_chat_template(
        chat(prompt, system_prompt), tokenize=False, add_generation_prompt=True
    )
