"""An ordered list of stages over ``datasets``, a run directory and a manifest.

``outputs/<pipeline>/<run-id>/`` holds each stage's output as a ``datasets`` folder,
the judgment store, logs, and ``manifest.json``. A stage is skipped when its output
is complete and its fingerprint (its config plus everything upstream) is unchanged,
so re-running a command resumes a run instead of repeating it.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from datasets import Dataset

from rlaif.config import STAGES, PipelineConfig, load_pipeline
from rlaif.datasets_io import fresh_dir, load_dir, replace_dir, save_atomic
from rlaif.devices import hardware, resolved_dtypes
from rlaif.errors import ConfigError, RlaifError
from rlaif.estimate import JudgeEstimate, estimate
from rlaif.hashing import folder_hash, stable_hash
from rlaif.judges import Budget, build_judge
from rlaif.locking import RunLock
from rlaif.logs import attach_run_logs, detach
from rlaif.models import load_tokenizer, resolve_model
from rlaif.preferences.bias import judge_report
from rlaif.progress import add_reporter, remove_reporter
from rlaif.prompts import drop_long_prompts, load_prompts, split_prompts
from rlaif.redaction import register_configured
from rlaif.report import length_drift, write_plots
from rlaif.run_dir import (
    OUTPUT_DIRS,
    prepare_run_dir,
    recover_manifest,
    stage_cost,
    write_manifest,
)
from rlaif.stages import aggregate, evaluate, judge, pair, sample, train
from rlaif.stages.aggregate import held_back_pairs
from rlaif.stages.evaluate import length_controlled_win_rate, win_rate
from rlaif.stages.judge import failure_counts, failure_reason
from rlaif.store import JudgmentStore
from rlaif.training.kl import estimate_kl

log = logging.getLogger("rlaif")

UPSTREAM = {
    "pair": "sample",
    "judge": "pair",
    "aggregate": "judge",
    "train": "aggregate",
    "evaluate": "train",
}
_PACKAGES = ("rlaif", "torch", "transformers", "trl", "datasets", "accelerate", "vllm", "jinja2")


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]
    partial: str | None = None
    """The stage that stopped short, if any."""
    reason: str | None = None
    """Why it stopped short: ``budget``, ``waiting`` (provider batches still running) or
    ``failures`` (judgments failed; the next run asks them again)."""

    @property
    def waiting(self) -> bool:
        return self.reason == "waiting"

    @property
    def evaluation(self) -> dict[str, Any] | None:
        return self.manifest.get("evaluation")

    @property
    def preferences_dir(self) -> Path:
        return self.run_dir / OUTPUT_DIRS["aggregate"]


class Pipeline:
    def __init__(self, config: PipelineConfig, *, source: str | None = None):
        self.config = config
        self.source = source
        register_configured(config.model_dump(mode="json"))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> Pipeline:
        return cls(load_pipeline(path, overrides), source=str(path))

    def default_run_dir(self) -> Path:
        """Same config, same directory: re-running a command resumes its run."""
        return Path(self.config.output_dir) / self.config.name / self.config.hash()[:12]

    def run(
        self,
        stages: list[str] | None = None,
        run_dir: str | Path | None = None,
        *,
        prompts: tuple[Dataset, Dataset] | None = None,
        train_input: Path | None = None,
        extra: dict[str, Any] | None = None,
        budget_usd: float | None = None,
    ) -> RunResult:
        """Run (or resume) ``stages``. ``prompts`` (train, held-out) replaces the configured
        prompts and ``train_input`` the run's own preferences (a nightly run trains on the
        cumulative dataset); ``extra`` is recorded in the manifest; ``budget_usd`` replaces
        ``judge.max_cost_usd`` as the cap on judge spending in this invocation."""
        run = _Run(self.config, Path(run_dir) if run_dir else self.default_run_dir(), self.source)
        run.prompt_override, run.train_input, run.extra = prompts, train_input, extra or {}
        run.budget = Budget(self.config.judge.max_cost_usd if budget_usd is None else budget_usd)
        return run.execute(_expand(stages))

    def estimate(self, run_dir: str | Path | None = None) -> list[JudgeEstimate]:
        """Judge calls, tokens and cost still to spend, without spending anything."""
        run_dir = Path(run_dir) if run_dir else self.default_run_dir()
        return estimate(self.config, run_dir, judgment_store_path(self.config))


def judgment_store_path(cfg: PipelineConfig) -> Path:
    return Path(cfg.judge.cache or Path(cfg.output_dir) / "judgments.sqlite")


def _expand(stages: list[str] | None) -> list[str]:
    if not stages:
        return list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGES)}")
    return [s for s in STAGES if s in stages]


class _Run:
    def __init__(self, config: PipelineConfig, run_dir: Path, source: str | None):
        self.cfg = config
        self.dir = run_dir
        self.source = source
        self.prompt_override: tuple[Dataset, Dataset] | None = None
        self.train_input: Path | None = None
        self.extra: dict[str, Any] = {}
        self.budget = Budget(config.judge.max_cost_usd)
        """Shared by every stage that calls judges in this invocation."""
        self._spent_at_start = 0.0

    # -- set-up ---------------------------------------------------------------------------
    def execute(self, wanted: list[str]) -> RunResult:
        rubrics = self._preflight()
        prepare_run_dir(self.dir)
        with RunLock(self.dir / ".lock", what=f"pipeline '{self.cfg.name}' in {self.dir}"):
            handlers = attach_run_logs(log, self.dir / "logs")
            add_reporter(self._progress)
            try:
                self.manifest = self._load_manifest(rubrics)
                self.train_prompts, self.heldout = self._prompts()
                self._own = self._own_inputs(rubrics)
                for name in self._plan(wanted):
                    if not self._stage(name):
                        reason = self.manifest["stages"][name]["partial_reason"]
                        return RunResult(self.dir, self.manifest, partial=name, reason=reason)
            finally:
                remove_reporter(self._progress)
                detach(log, handlers)
        return RunResult(self.dir, self.manifest)

    def _preflight(self) -> dict[str, str]:
        """Everything that can be wrong with the inputs fails here, before any compute."""
        resolve_model(self.cfg.model, field="model")
        resolved_dtypes(self.cfg)  # e.g. fp16 training asked for on a CPU
        rubrics = {}
        for spec in self.cfg.judge.judges:
            backend = build_judge(spec)
            backend.check()
            provenance = backend.provenance()
            rubrics[provenance["rubric_id"]] = provenance["rubric_hash"]
            rubric = getattr(backend, "rubric", None)
            if (
                rubric is not None
                and rubric.needs_reference
                and not self.cfg.prompts.reference_column
            ):
                raise ConfigError(
                    f"judge '{spec.name}': rubric {rubric.path} compares against a reference "
                    "answer, but prompts.reference_column is not set"
                )
            if getattr(spec, "model", None) == self.cfg.model:
                log.warning(
                    "judge '%s' is the policy model itself (%s): LLM judges favour their own "
                    "outputs (self-preference), so its preferences may reward style over "
                    "quality; prefer a judge from another model family",
                    spec.name,
                    spec.model,
                )
        split_prompts(load_prompts(self.cfg.prompts), self.cfg.prompts)
        store = judgment_store_path(self.cfg)
        if store.exists():  # a damaged store is said now, not after sampling
            JudgmentStore(store).close()
        return rubrics

    def _prompts(self) -> tuple[Dataset, Dataset]:
        if self.prompt_override is not None:
            train_set, heldout = self.prompt_override
        else:
            train_set, heldout = split_prompts(load_prompts(self.cfg.prompts), self.cfg.prompts)
        tokenizer = load_tokenizer(resolve_model(self.cfg.model))
        limit = self.cfg.prompts.max_prompt_tokens
        train_set, long_train = drop_long_prompts(train_set, tokenizer, limit)
        heldout, long_heldout = drop_long_prompts(heldout, tokenizer, limit)
        self.manifest["prompts"] = {
            "train": len(train_set),
            "heldout": len(heldout),
            "too_long": long_train + long_heldout,
        }
        if len(train_set) == 0:
            raise ConfigError(
                f"prompts: every training prompt is longer than prompts.max_prompt_tokens={limit}"
            )
        for name, ds in (("train", train_set), ("heldout", heldout)):
            if not (self.dir / "prompts" / name).exists():
                save_atomic(ds, self.dir / "prompts" / name)
        return train_set, heldout

    def _own_inputs(self, rubrics: dict[str, str]) -> dict[str, list]:
        """What each stage's result depends on besides its upstream stage's output."""
        c = self.cfg.model_dump(mode="json")
        c["judge"].pop("max_cost_usd")  # a budget changes how far a stage gets, not its result
        return {
            "sample": [c["model"], c["prompts"], c["sample"], _content_hash(self.train_prompts)],
            "pair": [c["pair"]],
            "judge": [c["judge"], rubrics],
            "aggregate": [c["aggregate"]],
            "train": [c["model"], c["train"], str(self.train_input or "")],
            "evaluate": [c["evaluate"], c["judge"], rubrics],
        }

    def _fingerprint(self, name: str) -> str:
        """A stage's own inputs, its upstream's fingerprint and the content of its upstream's
        output: when the judgments change (a retry filled in failures), aggregate and what
        follows it run again; when nothing changed, nothing does."""
        up = UPSTREAM.get(name)
        upstream = (
            [self._fingerprint(up), self.manifest["stages"].get(up, {}).get("output_hash")]
            if up
            else []
        )
        return stable_hash([name, self._own[name], upstream])

    def _plan(self, wanted: list[str]) -> list[str]:
        """The wanted stages, plus any upstream stage whose output is missing or stale."""
        plan = set(wanted)
        for name in wanted:
            up = UPSTREAM.get(name)
            while up and not self._complete(up):
                if up not in plan:
                    log.info("stage %s needs %s, which is not complete: running it too", name, up)
                plan.add(up)
                up = UPSTREAM.get(up)
        return [s for s in STAGES if s in plan]

    def _complete(self, name: str) -> bool:
        entry = self.manifest["stages"].get(name, {})
        return (
            entry.get("status") == "completed"
            and entry.get("fingerprint") == self._fingerprint(name)
            and (self.dir / OUTPUT_DIRS[name]).exists()
        )

    # -- stages ---------------------------------------------------------------------------
    def _stage(self, name: str) -> bool:
        """Run one stage; False when it stopped short and later stages must wait."""
        if self._complete(name):
            log.info("stage %s: complete, skipped", name)
            return True
        entry = {"status": "running", "fingerprint": self._fingerprint(name), "started_at": _now()}
        earlier = stage_cost(self.manifest["stages"].get(name, {}))
        if earlier:  # what earlier attempts paid stays on the run's bill
            entry["spent_before_usd"] = earlier
        self._spent_at_start = self.budget.spent
        self.manifest["stages"][name] = entry
        self._write_manifest()
        log.info("stage %s: started", name, extra={"event": "stage_started", "stage": name})
        start = time.monotonic()
        try:
            counts = getattr(self, f"_run_{name}")()
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            entry.update(
                status="interrupted" if interrupted else "failed",
                error=f"{type(exc).__name__}: {exc}",
                finished_at=_now(),
                spent_usd=self._spent_so_far(),
            )
            entry.pop("progress", None)
            self._write_manifest()
            log.error(
                "stage %s: %s: %s",
                name,
                entry["status"],
                entry["error"],
                extra={"event": "stage_failed", "stage": name, "error": entry["error"]},
            )
            raise
        reason = _partial_reason(counts)
        status = "partial" if reason else "completed"
        entry.update(
            status=status,
            finished_at=_now(),
            seconds=round(time.monotonic() - start, 2),
            counts=counts,
            output_hash=folder_hash(self.dir / OUTPUT_DIRS[name]),
        )
        if reason:
            entry["partial_reason"] = reason
        for transient in ("error", "progress", "spent_usd"):
            entry.pop(transient, None)
        self._write_manifest()
        log.info(
            "stage %s: %s in %.1fs %s",
            name,
            status,
            entry["seconds"],
            counts,
            extra={
                "event": "stage_finished",
                "stage": name,
                "status": status,
                "seconds": entry["seconds"],
                "counts": counts,
            },
        )
        if reason:
            log.warning("stage %s: %s", name, _PARTIAL_ADVICE[reason].format(**counts))
        return status == "completed"

    def _progress(self, info: dict) -> None:
        """Progress of the running stage into the manifest, for ``rlaif status``."""
        running = [e for e in self.manifest["stages"].values() if e.get("status") == "running"]
        if running:
            progress = {**info, "updated_at": _now()}
            running[0].update(progress=progress, spent_usd=self._spent_so_far())
            self._write_manifest()

    def _spent_so_far(self) -> float:
        """Judge spending of the running stage, so a crash does not erase it from the bill."""
        return round(self.budget.spent - self._spent_at_start, 6)

    def _input(self, name: str) -> Dataset:
        return load_dir(self.dir / OUTPUT_DIRS[name])

    def _store(self) -> JudgmentStore:
        return JudgmentStore(judgment_store_path(self.cfg))

    def _run_sample(self) -> dict:
        parts = self.dir / "samples.parts" / self._fingerprint("sample")[:12]
        out = sample(self.train_prompts, self.cfg.sample, model=self.cfg.model, parts_dir=parts)
        save_atomic(out, self.dir / OUTPUT_DIRS["sample"])
        shutil.rmtree(parts.parent)
        finished = [f for fs in out["finished"] for f in fs]
        return {"prompts": len(out), "responses": len(finished), "truncated": finished.count(False)}

    def _run_pair(self) -> dict:
        out = pair(self._input("sample"), self.cfg.pair)
        save_atomic(out, self.dir / OUTPUT_DIRS["pair"])
        return {"pairs": len(out)}

    def _run_judge(self) -> dict:
        with self._store() as store:
            out = judge(
                self._input("pair"),
                self.cfg.judge,
                store=store,
                budget=self.budget,
                batch_dir=self.dir / "batches",
            )
        save_atomic(out, self.dir / OUTPUT_DIRS["judge"])
        statuses = out["status"]
        paid = [
            c or 0.0 for c, cached in zip(out["cost_usd"], out["cached"], strict=True) if not cached
        ]
        counts: dict[str, Any] = {
            "judgments": len(out),
            "cached": sum(out["cached"]),
            **{s: statuses.count(s) for s in sorted(set(statuses))},
            "cost_usd": round(sum(paid), 6),
        }
        failures = failure_counts(out, self.cfg.judge.max_failures)
        if failures:
            counts["failures"] = failures
        return counts

    def _run_aggregate(self) -> dict:
        judgments = self._input("judge")
        out = aggregate(judgments, self.cfg.aggregate, system_prompt=self.cfg.sample.system_prompt)
        held_back = held_back_pairs(judgments)
        if len(out) == 0:
            raise RlaifError(_nothing_published(judgments, held_back, self.cfg, self.dir))
        save_atomic(out, self.dir / OUTPUT_DIRS["aggregate"])
        report = judge_report(judgments.to_pandas())
        (self.dir / OUTPUT_DIRS["aggregate"] / "judge_report.json").write_text(
            json.dumps(report, indent=2)
        )
        self.manifest["judge_report"] = report
        counts = {
            "pairs": len(set(judgments["pair_id"])),
            "preferences": len(out),
            "ties_kept": sum(out["tie"]) if len(out) else 0,
        }
        if held_back:
            counts["incomplete_pairs"] = held_back
        return counts

    def _run_train(self) -> dict:
        target = self.dir / OUTPUT_DIRS["train"]
        tmp = fresh_dir(target.with_name(target.name + ".tmp"))
        preferences = load_dir(self.train_input) if self.train_input else self._input("aggregate")
        history = train(
            preferences,
            self.cfg.train,
            model=self.cfg.model,
            output_dir=tmp,
            prompts=self.train_prompts,
            judges=self.cfg.judge,
            # outside train.tmp (rebuilt on every attempt), keyed by what is being trained
            checkpoint_dir=self.dir / "checkpoints" / self._fingerprint("train")[:12],
            system_prompt=self.cfg.sample.system_prompt,
        )
        save_atomic(history, tmp / "log")
        replace_dir(tmp, target)
        counts: dict[str, Any] = {"method": self.cfg.train.method}
        for column in ("loss", "reward", "kl"):  # DPO logs a loss; PPO a reward and a KL
            if column in history.column_names:
                series = [x for x in history[column] if x is not None]
                counts[f"first_{column}"] = series[0] if series else None
                counts[f"last_{column}"] = series[-1] if series else None
        metrics = target / "reward_model_metrics.json"
        if metrics.exists():
            counts["reward_model"] = json.loads(metrics.read_text())
        return counts

    def _run_evaluate(self) -> dict:
        with self._store() as store:
            out = evaluate(
                self.heldout,
                self.cfg.evaluate,
                policy=self.dir / OUTPUT_DIRS["train"] / "model",
                reference=self.cfg.model,
                sample_cfg=self.cfg.sample,
                judge_cfg=self.cfg.judge,
                store=store,
                budget=self.budget,
            )
        target = self.dir / OUTPUT_DIRS["evaluate"]
        save_atomic(out, target)
        summary = win_rate(
            out["p_policy"], bootstrap=self.cfg.evaluate.bootstrap, seed=self.cfg.evaluate.seed
        ).as_dict()
        summary["lc_win_rate"] = length_controlled_win_rate(
            out["p_policy"], out["policy_response"], out["reference_response"]
        )
        summary["kl_to_sft"] = estimate_kl(
            self.dir / OUTPUT_DIRS["train"] / "model",
            resolve_model(self.cfg.model),
            list(self.heldout["prompt"]),
            max_new_tokens=self.cfg.evaluate.max_new_tokens or self.cfg.sample.max_new_tokens,
            seed=self.cfg.evaluate.seed,
            dtype=self.cfg.sample.dtype,
            system_prompt=self.cfg.sample.system_prompt,
        )
        summary["mean_chars_policy"] = _mean_len(out["policy_response"])
        summary["mean_chars_reference"] = _mean_len(out["reference_response"])
        summary["length_drift"] = length_drift(self.dir)
        (target / "summary.json").write_text(json.dumps(summary, indent=2))
        self.manifest["evaluation"] = summary
        write_plots(self.dir)  # training curves, win rate, length drift: evaluation/plots/
        return {
            "prompts": len(out),
            "judged": summary["n"],
            "cost_usd": round(sum(out["cost_usd"]), 6),
            # prompts left unjudged because the budget ran out make the stage partial
            "skipped": 0 if self.budget.allows() else summary["unjudged"],
        }

    # -- manifest -------------------------------------------------------------------------
    def _load_manifest(self, rubrics: dict[str, str]) -> dict[str, Any]:
        manifest = recover_manifest(self.dir)
        manifest.setdefault("created_at", _now())
        manifest.setdefault("stages", {})
        manifest.update(
            pipeline=self.cfg.name,
            run_dir=str(self.dir),
            source=self.source,
            config=self.cfg.model_dump(mode="json"),
            config_hash=self.cfg.hash(),
            rubrics=rubrics,
            versions=_versions(),
            hardware=hardware().as_dict(),
            dtypes=_log_dtypes(self.cfg),
            **self.extra,
        )
        return manifest

    def _write_manifest(self) -> None:
        self.manifest["updated_at"] = _now()
        write_manifest(self.dir, self.manifest)


_PARTIAL_ADVICE = {
    "waiting": "{pending} judgments wait on provider batches; later stages wait. Re-run later "
    "to collect them (nothing is submitted twice).",
    "budget": "stopped at the budget (judge.max_cost_usd); later stages wait. Re-run to "
    "continue: judgments already made are free.",
    "failures": "{error} judgments failed ({failures[reasons]}); later stages wait. Re-run to "
    "ask the {failures[retryable]} that may still succeed (answers already stored are free).",
}


def _nothing_published(
    judgments: Dataset, held_back: dict[str, int], cfg: PipelineConfig, run_dir: Path
) -> str:
    """Why aggregate has nothing to publish, with what to do about the actual cause."""
    pairs = len(set(judgments["pair_id"]))
    if sum(held_back.values()) == pairs:
        errors = Counter(
            failure_reason(e or "")
            for s, e in zip(judgments["status"], judgments["error"], strict=True)
            if s != "ok"
        )
        return (
            f"aggregate: none of the {pairs} pairs has a valid judgment in every order "
            f"({held_back}); what the judges answered: {dict(errors.most_common(5))}. Fix "
            "the judge (`rlaif status`, logs/run.log) and re-run: answers already stored "
            "are reused"
        )
    hint = (
        "try aggregate.ties=keep or a lower aggregate.min_margin"
        if cfg.aggregate.ties == "drop"
        else "try a lower aggregate.min_margin, or a stronger judge"
    )
    return (
        f"aggregate: all {pairs} pairs were dropped (see {run_dir / 'logs' / 'run.log'} for "
        f"why); with a position-biased judge most pairs are ties: {hint}"
    )


def _partial_reason(counts: dict[str, Any]) -> str | None:
    """Why a stage's result is not complete yet, if it is not."""
    if counts.get("pending"):
        return "waiting"
    if counts.get("skipped"):
        return "budget"
    if (counts.get("failures") or {}).get("retryable"):
        return "failures"
    return None


def _log_dtypes(cfg: PipelineConfig) -> dict[str, str]:
    """Each model's dtype on this machine, said once per run (``dtype: auto`` resolves here)."""
    dtypes = resolved_dtypes(cfg)
    hw = hardware()
    log.info(
        "dtypes: %s (%s %s, native bf16: %s)",
        ", ".join(f"{k}={v}" for k, v in dtypes.items()),
        hw.device,
        hw.name,
        hw.native_bf16,
    )
    return dtypes


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _content_hash(prompts: Dataset) -> str:
    return stable_hash(list(prompts["prompt"]))


def _mean_len(texts: list[str]) -> float:
    return round(sum(map(len, texts)) / len(texts), 1) if texts else 0.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
