"""Other trainers' own code, run here as their users run it: OpenRLHF and verl installed
``--no-deps`` into a folder of their own (``trainers_site``), the GPU stack they import and
never call here stubbed (``stub_gpu_only``), and the inputs their reward code takes (verl's
``DataProto`` batch, an OpenRLHF engine that "generates" a given answer). The hand-off tests and
``benchmarks/trainer_rewards.py`` share it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import SimpleNamespace

from rlaif.integrations.recipes import TRAINERS

SIDE_PACKAGES = (
    "tensordict==0.15.3",  # verl's DataProto: pure Python on top of our torch
    "pyvers==0.2.3",
    "pylatexenc==2.11",
    "orjson==3.13.0",
    "hydra-core==1.3.8",
    "omegaconf==2.4.0",
    "antlr4-python3-runtime==4.9.3",
)
"""What the trainers import at module level beyond this project's own dependencies."""


def trainers_site(root: Path) -> Path:
    """OpenRLHF and verl (the releases ``TRAINERS`` names) without their GPU dependencies,
    installed once into a folder under ``root``; raises ``RuntimeError`` with pip's reason when
    they cannot be installed."""
    versions = "-".join(f"{name}{version}" for name, version in TRAINERS.items())
    site = root / f"handoff-{versions}-td"
    if (site / ".complete").exists():
        return site
    wanted = [f"{name}=={version}" for name, version in TRAINERS.items()]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
         "--target", str(site), *wanted, *SIDE_PACKAGES],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"could not install {', '.join(wanted)}: {done.stderr[-400:]}")
    (site / ".complete").write_text("\n".join(wanted))
    return site


GPU_ONLY = ("deepspeed", "flash_attn", "torchdata", "vllm", "ray", "tensordict", "codetiming")


class _Anything(types.ModuleType):
    """A module whose every attribute is a do-nothing class: enough for import-time use."""

    __path__: list[str] = []

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _Stubs(MetaPathFinder, Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.names:
            return ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Anything(spec.name)

    def exec_module(self, module) -> None:
        pass


def stub_gpu_only() -> None:
    """Stub the GPU-only packages the trainers import at module level and this machine lacks."""
    missing = {name for name in GPU_ONLY if importlib.util.find_spec(name) is None}
    sys.meta_path.insert(0, _Stubs(missing))


class Engine:
    """Stands in for OpenRLHF's vLLM engine: "generates" a fixed answer, ending it as vLLM
    does (the end-of-turn token when finished, nothing when cut at max_tokens)."""

    def __init__(self, token_ids: list[int], finished: bool) -> None:
        self.token_ids, self.finished = token_ids, finished

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(
            token_ids=self.token_ids,
            finish_reason="stop" if self.finished else "length",
            logprobs=None,
        )
        return SimpleNamespace(outputs=[output])


def verl_batch(tokenizer, rows: list[dict], answers: list[str], end_of_turn: str):
    """verl's ``DataProto`` of ``rows`` (exported dataset rows) answered by ``answers``: the
    prompts left-padded, the answers (and their end-of-turn token) right-padded, as verl's
    rollout hands them to its reward managers."""
    import numpy as np
    import torch
    from verl import DataProto

    prompts = [
        tokenizer.apply_chat_template(list(r["prompt"]), add_generation_prompt=True, tokenize=True)
        for r in rows
    ]
    prompts = [p["input_ids"] if hasattr(p, "keys") else p for p in prompts]
    eos = tokenizer.convert_tokens_to_ids(end_of_turn)
    responses = [tokenizer(a, add_special_tokens=False)["input_ids"] + [eos] for a in answers]
    width_p, width_r = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id or 0
    prompt_ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    mask = torch.tensor(
        [
            [0] * (width_p - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (width_r - len(r))
            for p, r in zip(prompts, responses, strict=True)
        ]
    )
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array([r["data_source"] for r in rows], dtype=object),
            "reward_model": np.array([dict(r["reward_model"]) for r in rows], dtype=object),
            "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
        },
    )
