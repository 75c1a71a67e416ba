"""Who writes PPO's rollouts: the policy's own ``generate``, or an in-process vLLM engine
that receives the policy's weights after every optimizer phase.

Either way a rollout comes back as token ids (left-padded prompt, then the response), so the
log-probabilities PPO uses are always recomputed by the policy's forward pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rlaif.chat import generation_text
from rlaif.config import PPOConfig
from rlaif.errors import ConfigError
from rlaif.models.devices import resolve_dtype
from rlaif.sampling import pick_backend


@dataclass(frozen=True)
class RolloutBatch:
    ids: torch.Tensor
    """Prompt (left-padded) followed by the response, padded after its end."""
    prompt_attention: torch.Tensor
    start: int
    """Where the responses begin in ``ids``."""


def chat_texts(tokenizer, prompts: list[str], system_prompt: str | None = None) -> list[str]:
    return [generation_text(tokenizer, p, system_prompt) for p in prompts]


class TransformersRollouts:
    """Sampling with the policy's own ``generate``: runs anywhere, no extra memory."""

    def __init__(self, tokenizer, cfg: PPOConfig, *, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.system_prompt = system_prompt

    @torch.no_grad()
    def sample(self, policy, prompts: list[str]) -> RolloutBatch:
        enc = self.tokenizer(
            chat_texts(self.tokenizer, prompts, self.system_prompt),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(policy.device)
        policy.eval()
        out = policy.generate(
            **enc,
            do_sample=True,
            temperature=self.cfg.temperature,
            top_k=None,
            top_p=None,
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return RolloutBatch(out, enc["attention_mask"], enc["input_ids"].shape[1])

    def sync(self, policy) -> None:
        """Nothing to do: ``generate`` runs on the live weights."""

    def close(self) -> None:
        """Nothing to free."""


class VllmRollouts:
    """An in-process ``vllm.LLM`` on the policy's checkpoint; ``sync`` copies the policy's
    current weights into it (``model.load_weights`` inside the engine's worker)."""

    def __init__(
        self,
        model_path: Path | str,
        tokenizer,
        cfg: PPOConfig,
        *,
        seed: int,
        system_prompt: str | None = None,
    ):
        # In-process engine: the worker's model is reachable without serialising weights.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM, SamplingParams

        self.tokenizer = tokenizer
        self.cfg = cfg
        self.system_prompt = system_prompt
        # The seed goes to the engine: a per-request seed crashes vLLM's CPU build. Prefix
        # caching is off because cached keys and values would outlive a weight update.
        self.llm = LLM(
            model=str(model_path),
            dtype=resolve_dtype(cfg.vllm_dtype, where="ppo rollouts (vLLM)"),
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            enforce_eager=True,
            enable_prefix_caching=False,
            seed=seed,
        )
        self.params = SamplingParams(
            temperature=cfg.temperature,
            top_p=1.0,
            max_tokens=cfg.max_new_tokens,
        )

    def sample(self, policy, prompts: list[str]) -> RolloutBatch:
        from vllm.inputs import TokensPrompt

        encoded = [
            self.tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in chat_texts(self.tokenizer, prompts, self.system_prompt)
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in encoded], self.params, use_tqdm=False
        )
        responses = [list(o.outputs[0].token_ids) for o in outputs]
        return _batch(encoded, responses, self.tokenizer.pad_token_id, policy.device)

    @torch.no_grad()
    def sync(self, policy) -> None:
        """vLLM's in-place reload: checkpoint-format weights go through each layer's weight
        loader again and are re-processed for the kernels (repacked on CPU, for one)."""
        weights = [(name, tensor.detach()) for name, tensor in policy.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})

    def close(self) -> None:
        del self.llm


def _batch(prompts: list[list[int]], responses: list[list[int]], pad: int, device) -> RolloutBatch:
    """Left-pad the prompts and right-pad the responses into one id tensor, as ``generate``
    returns them."""
    width_p = max(map(len, prompts))
    width_r = max(1, *map(len, responses))
    ids = torch.full((len(prompts), width_p + width_r), pad, dtype=torch.long)
    attention = torch.zeros((len(prompts), width_p), dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[row, width_p - len(p) : width_p] = torch.tensor(p)
        ids[row, width_p : width_p + len(r)] = torch.tensor(r, dtype=torch.long)
        attention[row, width_p - len(p) :] = 1
    return RolloutBatch(ids.to(device), attention.to(device), width_p)


def make_rollouts(
    cfg: PPOConfig,
    model_path: Path | str,
    tokenizer,
    *,
    processes: int,
    seed: int,
    system_prompt: str | None = None,
) -> TransformersRollouts | VllmRollouts:
    """The engine ``cfg.rollout_backend`` asks for (``auto``: vLLM with a GPU)."""
    backend = pick_backend(cfg.rollout_backend)
    if backend == "vllm" and processes > 1:
        if cfg.rollout_backend == "auto":
            return TransformersRollouts(tokenizer, cfg, system_prompt=system_prompt)
        raise ConfigError(
            "train.ppo.rollout_backend: vllm runs one engine in a single training process; "
            f"this launch has {processes} processes (use transformers, or num_processes: 1)"
        )
    if backend == "vllm":
        return VllmRollouts(model_path, tokenizer, cfg, seed=seed, system_prompt=system_prompt)
    return TransformersRollouts(tokenizer, cfg, system_prompt=system_prompt)
