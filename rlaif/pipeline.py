"""An ordered list of stages over ``datasets``, a run directory and a manifest.

``outputs/<pipeline>/<run-id>/`` holds each stage's output as a ``datasets`` folder,
the judgment store, logs, and ``manifest.json``. A stage is skipped when its output
is complete and its fingerprint (its config plus everything upstream) is unchanged,
so re-running a command resumes a run instead of repeating it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk

from rlaif.config import STAGES, PipelineConfig, load_pipeline
from rlaif.errors import ConfigError, RlaifError
from rlaif.estimate import JudgeEstimate, estimate
from rlaif.hashing import stable_hash
from rlaif.judges import build_judge
from rlaif.models import resolve_model
from rlaif.preferences.bias import judge_report
from rlaif.prompts import load_prompts, split_prompts
from rlaif.stages import aggregate, evaluate, judge, pair, sample, train
from rlaif.stages.evaluate import length_controlled_win_rate, win_rate
from rlaif.store import JudgmentStore
from rlaif.training.kl import estimate_kl

log = logging.getLogger("rlaif")

OUTPUT_DIRS = {
    "sample": "samples",
    "pair": "pairs",
    "judge": "judgments",
    "aggregate": "preferences",
    "train": "train",
    "evaluate": "evaluation",
}
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
    """The stage that stopped short (the judging budget ran out), if any."""

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

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> Pipeline:
        return cls(load_pipeline(path, overrides), source=str(path))

    def default_run_dir(self) -> Path:
        """Same config, same directory: re-running a command resumes its run."""
        return Path(self.config.output_dir) / self.config.name / self.config.hash()[:12]

    def run(self, stages: list[str] | None = None, run_dir: str | Path | None = None) -> RunResult:
        wanted = _expand(stages)
        run = _Run(self.config, Path(run_dir) if run_dir else self.default_run_dir(), self.source)
        return run.execute(wanted)

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
        self.manifest_path = run_dir / "manifest.json"

    # -- set-up ---------------------------------------------------------------------------
    def execute(self, wanted: list[str]) -> RunResult:
        rubrics = self._preflight()
        self.dir.mkdir(parents=True, exist_ok=True)
        handler = _attach_log_file(self.dir / "logs" / "run.log")
        try:
            self.manifest = self._load_manifest(rubrics)
            self.train_prompts, self.heldout = self._prompts()
            self.fingerprints = self._fingerprints(rubrics)
            for name in self._plan(wanted):
                if not self._stage(name):
                    return RunResult(self.dir, self.manifest, partial=name)
        finally:
            log.removeHandler(handler)
            handler.close()
        return RunResult(self.dir, self.manifest)

    def _preflight(self) -> dict[str, str]:
        """Everything that can be wrong with the inputs fails here, before any compute."""
        resolve_model(self.cfg.model, field="model")
        rubrics = {}
        for spec in self.cfg.judge.judges:
            backend = build_judge(spec)
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
        return rubrics

    def _prompts(self) -> tuple[Dataset, Dataset]:
        train_set, heldout = split_prompts(load_prompts(self.cfg.prompts), self.cfg.prompts)
        for name, ds in (("train", train_set), ("heldout", heldout)):
            if not (self.dir / "prompts" / name).exists():
                _save(ds, self.dir / "prompts" / name)
        return train_set, heldout

    def _fingerprints(self, rubrics: dict[str, str]) -> dict[str, str]:
        c = self.cfg.model_dump(mode="json")
        own = {
            "sample": [c["model"], c["prompts"], c["sample"]],
            "pair": [c["pair"]],
            "judge": [c["judge"], rubrics],
            "aggregate": [c["aggregate"]],
            "train": [c["model"], c["train"]],
            "evaluate": [c["evaluate"], c["judge"], rubrics],
        }
        fps: dict[str, str] = {}
        for name in STAGES:
            fps[name] = stable_hash([name, own[name], fps.get(UPSTREAM.get(name, ""), "")])
        return fps

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
            and entry.get("fingerprint") == self.fingerprints[name]
            and (self.dir / OUTPUT_DIRS[name]).exists()
        )

    # -- stages ---------------------------------------------------------------------------
    def _stage(self, name: str) -> bool:
        """Run one stage; False when it stopped short and later stages must wait."""
        if self._complete(name):
            log.info("stage %s: complete, skipped", name)
            return True
        entry = {"status": "running", "fingerprint": self.fingerprints[name], "started_at": _now()}
        self.manifest["stages"][name] = entry
        self._write_manifest()
        log.info("stage %s: started", name)
        start = time.monotonic()
        try:
            counts = getattr(self, f"_run_{name}")()
        except BaseException as exc:
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())
            self._write_manifest()
            raise
        status = "partial" if counts.get("skipped") else "completed"
        entry.update(
            status=status,
            finished_at=_now(),
            seconds=round(time.monotonic() - start, 2),
            counts=counts,
        )
        entry.pop("error", None)
        self._write_manifest()
        log.info("stage %s: %s in %.1fs %s", name, status, entry["seconds"], counts)
        if status == "partial":
            log.warning(
                "stage %s stopped at the budget (judge.max_cost_usd); later stages "
                "wait. Re-run to continue: judgments already made are free.",
                name,
            )
        return status == "completed"

    def _input(self, name: str) -> Dataset:
        return load_from_disk(str(self.dir / OUTPUT_DIRS[name]))

    def _store(self) -> JudgmentStore:
        return JudgmentStore(judgment_store_path(self.cfg))

    def _run_sample(self) -> dict:
        out = sample(self.train_prompts, self.cfg.sample, model=self.cfg.model)
        _save(out, self.dir / OUTPUT_DIRS["sample"])
        finished = [f for fs in out["finished"] for f in fs]
        return {"prompts": len(out), "responses": len(finished), "truncated": finished.count(False)}

    def _run_pair(self) -> dict:
        out = pair(self._input("sample"), self.cfg.pair)
        _save(out, self.dir / OUTPUT_DIRS["pair"])
        return {"pairs": len(out)}

    def _run_judge(self) -> dict:
        with self._store() as store:
            out = judge(self._input("pair"), self.cfg.judge, store=store)
        _save(out, self.dir / OUTPUT_DIRS["judge"])
        statuses = out["status"]
        return {
            "judgments": len(out),
            "cached": sum(out["cached"]),
            **{s: statuses.count(s) for s in sorted(set(statuses))},
        }

    def _run_aggregate(self) -> dict:
        judgments = self._input("judge")
        out = aggregate(judgments, self.cfg.aggregate)
        if len(out) == 0:
            raise RlaifError(
                f"aggregate: all {len(set(judgments['pair_id']))} pairs were dropped (see "
                f"{self.dir / 'logs' / 'run.log'} for why); with a position-biased judge most "
                "pairs are ties: try aggregate.ties=keep or a lower aggregate.min_margin"
            )
        _save(out, self.dir / OUTPUT_DIRS["aggregate"])
        report = judge_report(judgments.to_pandas())
        (self.dir / OUTPUT_DIRS["aggregate"] / "judge_report.json").write_text(
            json.dumps(report, indent=2)
        )
        self.manifest["judge_report"] = report
        return {
            "pairs": len(set(judgments["pair_id"])),
            "preferences": len(out),
            "ties_kept": sum(out["tie"]) if len(out) else 0,
        }

    def _run_train(self) -> dict:
        target = self.dir / OUTPUT_DIRS["train"]
        tmp = _fresh(target.with_name(target.name + ".tmp"))
        history = train(
            self._input("aggregate"),
            self.cfg.train,
            model=self.cfg.model,
            output_dir=tmp,
            prompts=self.train_prompts,
            judges=self.cfg.judge,
        )
        _save(history, tmp / "log")
        _replace(tmp, target)
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
            )
        target = self.dir / OUTPUT_DIRS["evaluate"]
        _save(out, target)
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
        )
        summary["mean_chars_policy"] = _mean_len(out["policy_response"])
        summary["mean_chars_reference"] = _mean_len(out["reference_response"])
        (target / "summary.json").write_text(json.dumps(summary, indent=2))
        self.manifest["evaluation"] = summary
        return {"prompts": len(out), "judged": summary["n"]}

    # -- manifest -------------------------------------------------------------------------
    def _load_manifest(self, rubrics: dict[str, str]) -> dict[str, Any]:
        manifest: dict[str, Any] = {}
        if self.manifest_path.exists():
            try:
                manifest = json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{self.manifest_path}: corrupt manifest ({exc})") from exc
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
        )
        return manifest

    def _write_manifest(self) -> None:
        self.manifest["updated_at"] = _now()
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2))
        os.replace(tmp, self.manifest_path)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no manifest.json here; is this a run directory?")
    return json.loads(path.read_text())


def _save(ds: Dataset, target: Path) -> None:
    """Write a dataset so that ``target`` is either absent or complete, never half-written."""
    tmp = _fresh(target.with_name(target.name + ".tmp"))
    ds.save_to_disk(str(tmp))
    _replace(tmp, target)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _replace(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _attach_log_file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _mean_len(texts: list[str]) -> float:
    return round(sum(map(len, texts)) / len(texts), 1) if texts else 0.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
