"""A local causal LM as a pairwise judge, read from next-token label probabilities.

Following the RLAIF paper, the preference is the softmax over the logits of the two
label tokens right after the judge prompt, so no text needs to be parsed and every
judgment is a soft label.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rlaif.config import TransformersJudgeConfig
from rlaif.errors import ConfigError
from rlaif.judges.base import BatchJudge, JudgeRequest, RubricJudge, Verdict
from rlaif.judges.verdicts import from_label_probabilities
from rlaif.models.devices import hardware, pick_dtype
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.rubrics import load_rubric


class TransformersJudge(RubricJudge, BatchJudge):
    def __init__(self, cfg: TransformersJudgeConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.batch_size = cfg.batch_size
        self.rubric = load_rubric(cfg.rubric)
        if self.rubric.read != "label_probs":
            raise ConfigError(
                f"judge '{cfg.name}': rubric {self.rubric.path} reads '{self.rubric.read}'; the "
                "transformers backend reads label probabilities (read: label_probs)"
            )
        self.model_path = resolve_model(cfg.model, field=f"judge '{cfg.name}'.model")
        self._tokenizer = None
        self._model = None
        self._label_ids: list[int] = []
        self._last_only: dict[str, int] = {}

    def identity(self) -> dict[str, Any]:
        return {
            "backend": "transformers",
            "model": self.cfg.model,
            # bf16 and float32 give slightly different probabilities, so the dtype the model
            # actually runs in (not "auto") is part of what a judgment is keyed by
            "dtype": pick_dtype(self.cfg.dtype, hardware()),
            "read": "label_probs",
            "rubric": self.rubric.id,
            "rubric_hash": self.rubric.sha256,
        }

    def _load(self) -> None:
        from rlaif.sampling.transformers import load_causal_lm

        self._tokenizer, self._model = load_causal_lm(
            self.model_path, self.cfg.dtype, where=f"judge '{self.name}'"
        )
        self._label_ids = self.rubric.label_token_ids(self._tokenizer, model=self.cfg.model)
        takes = "logits_to_keep" in inspect.signature(self._model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if takes else {}

    def check(self) -> None:
        self.rubric.label_token_ids(load_tokenizer(self.model_path), model=self.cfg.model)

    def order(self, requests: list[JudgeRequest]) -> list[int]:
        """Longest first: similar lengths share a batch, so little compute goes to padding,
        and an out-of-memory shows up on the first batch."""
        sizes = [sum(len(m["content"]) for m in self.render(r)) for r in requests]
        return sorted(range(len(requests)), key=lambda i: -sizes[i])

    @torch.inference_mode()
    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        if self._model is None:
            self._load()
        tok = self._tokenizer
        texts = [
            tok.apply_chat_template(self.render(r), tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        verdicts: list[Verdict | None] = [None] * len(requests)
        fits = []
        for i, n in enumerate(lengths):
            if n > self.cfg.max_length:
                verdicts[i] = Verdict(
                    status="error",
                    raw_output="",
                    error=f"judge prompt is {n} tokens, over max_length={self.cfg.max_length}",
                )
            else:
                fits.append(i)
        for start in range(0, len(fits), self.batch_size):
            idx = fits[start : start + self.batch_size]
            enc = tok(
                [texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            )
            # only the last position's logits are read: the output layer runs for it alone
            logits = self._model(**enc, **self._last_only).logits[:, -1, :].float()
            probs = logits.softmax(-1)
            label_probs = probs[:, self._label_ids].tolist()
            top = logits.argmax(-1).tolist()
            for row, i in enumerate(idx):
                verdicts[i] = from_label_probabilities(
                    self.rubric, tok.decode([top[row]]), label_probs[row]
                )
        return verdicts  # type: ignore[return-value]
