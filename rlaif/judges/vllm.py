"""An in-process ``vllm.LLM`` as judge: the fast path on a local GPU (the CPU build works too).

Reads label probabilities from the first token's logprobs, a JSON-schema-constrained
answer, or free text under the rubric's parse rule.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rlaif.config import VllmJudgeConfig
from rlaif.judges.base import BatchJudge, JudgeRequest, RubricJudge, Verdict
from rlaif.judges.verdicts import from_label_logprobs, read_text
from rlaif.models.devices import hardware, pick_dtype, resolve_dtype, vllm_enforce_eager
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.rubrics import load_rubric


class VllmJudge(RubricJudge, BatchJudge):
    def __init__(self, cfg: VllmJudgeConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.model = cfg.model
        self.batch_size = cfg.batch_size
        self.rubric = load_rubric(cfg.rubric)
        self.model_path = resolve_model(cfg.model, field=f"judge '{cfg.name}'.model")
        self._llm = None

    def identity(self) -> dict[str, Any]:
        read = self.rubric.read
        decoding = (
            {"top_logprobs": self.cfg.top_logprobs}
            if read == "label_probs"
            else {"max_tokens": self.cfg.max_tokens}
        )
        return {
            "backend": "vllm",
            "model": self.cfg.model,
            "dtype": pick_dtype(self.cfg.dtype, hardware()),
            "read": read,
            "temperature": self.cfg.temperature,
            **decoding,
            "rubric": self.rubric.id,
            "rubric_hash": self.rubric.sha256,
        }

    def check(self) -> None:
        if self.rubric.read == "label_probs":
            self.rubric.label_token_ids(load_tokenizer(self.model_path), model=self.cfg.model)

    def _params(self):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if self.rubric.read == "label_probs":
            return SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.cfg.top_logprobs)
        structured = (
            StructuredOutputsParams(json=self.rubric.json_schema())
            if self.rubric.read == "json"
            else None
        )
        return SamplingParams(
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            structured_outputs=structured,
        )

    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=str(self.model_path),
                dtype=resolve_dtype(self.cfg.dtype, where=f"judge '{self.name}'"),
                seed=0,
                gpu_memory_utilization=self.cfg.gpu_memory_utilization,
                max_model_len=self.cfg.max_model_len,
                enforce_eager=vllm_enforce_eager(),
                enable_prefix_caching=self.cfg.prefix_caching,
            )
        try:
            outputs = self._llm.chat(
                [self.render(r) for r in requests], self._params(), use_tqdm=False
            )
        except ValueError:
            if len(requests) == 1:
                raise
            # One bad request (too long, say) fails the batch: judge one by one to isolate it.
            return [self._one(r) for r in requests]
        return [self._read(out) for out in outputs]

    def _one(self, request: JudgeRequest) -> Verdict:
        try:
            return self.judge([request])[0]
        except ValueError as exc:
            return Verdict(status="error", raw_output="", error=f"ValueError: {exc}")

    def _read(self, output: Any) -> Verdict:
        completion = output.outputs[0]
        text = completion.text
        if self.rubric.read == "label_probs":
            first = completion.logprobs[0] if completion.logprobs else {}
            top = {lp.decoded_token: lp.logprob for lp in first.values()}
            verdict = from_label_logprobs(self.rubric, text, top)
        else:
            verdict = read_text(self.rubric, text)
        return replace(
            verdict,
            input_tokens=len(output.prompt_token_ids),
            output_tokens=len(completion.token_ids),
        )
