"""An ordered list of stages over ``datasets``, a run directory and a manifest.

The stages are declared in :mod:`rlaif.run.stage_table`; this runner is generic over it. A
stage is skipped when its output is complete and its fingerprint (its config, what else it
declares it covers, its upstream's fingerprint and the content of its upstream's output) is
unchanged, so re-running a command resumes a run instead of repeating it.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from datasets import Dataset

from rlaif.config import PipelineConfig, load_pipeline
from rlaif.errors import ConfigError, DiskFullError
from rlaif.hashing import folder_hash, stable_hash
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.models.devices import hardware, resolved_dtypes
from rlaif.models.loading import load_tokenizer, resolve_model, tokenizer_identity
from rlaif.progress import add_reporter, remove_reporter
from rlaif.prompts import drop_long_prompts, load_prompts, split_prompts
from rlaif.redaction import register_configured
from rlaif.run.datasets_io import load_dir, save_atomic
from rlaif.run.estimate import JudgeEstimate, estimate
from rlaif.run.logs import attach_run_logs, detach
from rlaif.run.preflight import preflight
from rlaif.run.run_dir import RunDir, stage_cost
from rlaif.run.stage_table import BY_NAME, NAMES, STAGES
from rlaif.run.start_policy import StartPolicy

log = logging.getLogger("rlaif")
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
        return RunDir(self.run_dir).output("aggregate")

    @property
    def unreadable_pairs(self) -> int:
        """Pairs aggregate held back because a judge's answer could not be read (asking
        again would not change it): the run completed, but not with every pair."""
        aggregate = self.manifest.get("stages", {}).get("aggregate", {})
        if (self.manifest.get("config") or {}).get("aggregate", {}).get("incomplete") != "hold":
            return 0
        return int((aggregate.get("counts") or {}).get("incomplete_pairs", {}).get("unreadable", 0))


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
        start: StartPolicy | None = None,
    ) -> RunResult:
        """Run (or resume) ``stages``. ``prompts`` (train, held-out) replaces the configured
        prompts and ``train_input`` the run's own preferences (a nightly run trains on the
        cumulative dataset); ``extra`` is recorded in the manifest; ``budget_usd`` replaces
        ``judge.max_cost_usd`` as the cap on judge spending in this invocation; ``start`` is
        a trained policy to sample and train from instead of the SFT model. The plots of an
        evaluated run are drawn once the run is over."""
        run = _Run(self.config, RunDir(run_dir or self.default_run_dir()), self.source)
        run.prompt_override, run.train_input, run.extra = prompts, train_input, extra or {}
        run.start = start
        run.budget = Budget(self.config.judge.max_cost_usd if budget_usd is None else budget_usd)
        result = run.execute(_expand(stages))
        if "evaluate" in run.ran:
            from rlaif.report import write_plots

            write_plots(result.run_dir)
        return result

    def estimate(self, run_dir: str | Path | None = None) -> list[JudgeEstimate]:
        """Judge calls, tokens and cost still to spend, without spending anything."""
        folder = RunDir(run_dir or self.default_run_dir())
        return estimate(self.config, folder, self.config.judgment_store_path())


def _expand(stages: list[str] | None) -> list[str]:
    if not stages:
        return list(NAMES)
    unknown = [s for s in stages if s not in NAMES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(NAMES)}")
    return [s for s in NAMES if s in stages]


class _Run:
    """One invocation over one run directory; what stages see of it is
    :class:`rlaif.run.stage_table.Run`."""

    def __init__(self, config: PipelineConfig, run_dir: RunDir, source: str | None):
        self.cfg = config
        self.dir = run_dir
        self.source = source
        self.prompt_override: tuple[Dataset, Dataset] | None = None
        self.train_input: Path | None = None
        self.start: StartPolicy | None = None
        self.extra: dict[str, Any] = {}
        self.budget = Budget(config.judge.max_cost_usd)
        """Shared by every stage that calls judges in this invocation."""
        self.ran: list[str] = []
        self._hardware_recorded = False
        self._spent_at_start = 0.0

    def execute(self, wanted: list[str]) -> RunResult:
        rubrics = preflight(self.cfg, self.dir.path, wanted)
        self.dir.prepare()
        with self.dir.lock(f"pipeline '{self.cfg.name}' in {self.dir}"):
            handlers = attach_run_logs(log, self.dir.logs)
            add_reporter(self._progress)
            try:
                self.manifest = self._load_manifest(rubrics)
                self.train_prompts, self.heldout = self._prompts()
                self._covered = self._covered_inputs(rubrics)
                for name in self._plan(wanted):
                    if not self._stage(name):
                        reason = self.manifest["stages"][name]["partial_reason"]
                        return RunResult(self.dir.path, self.manifest, name, reason)
            finally:
                remove_reporter(self._progress)
                detach(log, handlers)
        return RunResult(self.dir.path, self.manifest)

    # -- what stages see ------------------------------------------------------------------
    def input(self, stage: str) -> Dataset:
        return load_dir(self.dir.output(stage))

    def save(self, stage: str, output: Dataset) -> None:
        save_atomic(output, self.dir.output(stage))

    def store(self) -> JudgmentStore:
        return JudgmentStore(self.cfg.judgment_store_path())

    def fingerprint(self, name: str) -> str:
        """A stage's covered inputs, its upstream's fingerprint and the content of its
        upstream's output: when the judgments change (a retry filled in failures), aggregate
        and what follows it run again; when nothing changed, nothing does."""
        up = BY_NAME[name].upstream
        upstream = (
            [self.fingerprint(up), self.manifest["stages"].get(up, {}).get("output_hash")]
            if up
            else []
        )
        return stable_hash([name, self._covered[name], upstream])

    # -- planning -------------------------------------------------------------------------
    def _prompts(self) -> tuple[Dataset, Dataset]:
        if self.prompt_override is not None:
            train_set, heldout = self.prompt_override
        else:
            train_set, heldout = split_prompts(load_prompts(self.cfg.prompts), self.cfg.prompts)
        model = resolve_model(self.cfg.model)
        limit = self.cfg.prompts.max_prompt_tokens
        splits = {"train": self.dir.prompts("train"), "heldout": self.dir.prompts("heldout")}
        # the length filter needs the tokenizer (seconds to load); a re-run of the same
        # prompts, tokenizer and limit reads the filtered sets it saved instead
        key = stable_hash(
            [train_set.to_dict(), heldout.to_dict(), tokenizer_identity(model), limit]
        )
        if self.manifest.get("prompts", {}).get("filter_key") == key and all(
            path.exists() for path in splits.values()
        ):
            return load_dir(splits["train"]), load_dir(splits["heldout"])
        tokenizer = load_tokenizer(model)
        train_set, long_train = drop_long_prompts(train_set, tokenizer, limit)
        heldout, long_heldout = drop_long_prompts(heldout, tokenizer, limit)
        counts = {"train": len(train_set), "heldout": len(heldout)}
        self.manifest["prompts"] = {
            **counts,
            "too_long": long_train + long_heldout,
            **({"filter_key": key} if not any(p.exists() for p in splits.values()) else {}),
        }
        if len(train_set) == 0:
            raise ConfigError(
                f"prompts: every training prompt is longer than prompts.max_prompt_tokens={limit}"
            )
        for split, ds in (("train", train_set), ("heldout", heldout)):
            if not splits[split].exists():
                save_atomic(ds, splits[split])
        return train_set, heldout

    def _covered_inputs(self, rubrics: dict[str, str]) -> dict[str, list]:
        """What each stage's fingerprint covers, as its table entry declares: config sections
        as their fields declare them (:mod:`rlaif.config.result`), what a stage adds to its
        own section from the run, and the run's inputs."""
        c = self.cfg.stable_dump(fingerprint=True)
        for stage in STAGES:
            if extra := stage.run_inputs(self):
                c[stage.name] = {**c[stage.name], **extra}
        inputs = {
            "train_prompts": stable_hash(list(self.train_prompts["prompt"])),
            "rubrics": rubrics,
            "train_input": str(self.train_input or ""),
            # only a run that starts from a trained policy covers one: others keep their hashes
            "policy": self.start.covered() if self.start else None,
        }
        # a section the config leaves at its default is left out (stable_dump): covered by none
        return {
            s.name: [
                c[k] if k in c else inputs[k]
                for k in s.covers
                if k in c or inputs.get(k) is not None
            ]
            for s in STAGES
        }

    def _plan(self, wanted: list[str]) -> list[str]:
        """The wanted stages, plus any upstream stage whose output is missing or stale."""
        plan = set(wanted)
        for name in wanted:
            up = BY_NAME[name].upstream
            while up and not self._complete(up):
                if up not in plan:
                    log.info("stage %s needs %s, which is not complete: running it too", name, up)
                plan.add(up)
                up = BY_NAME[up].upstream
        return [s for s in NAMES if s in plan]

    def _complete(self, name: str) -> bool:
        entry = self.manifest["stages"].get(name, {})
        return (
            entry.get("status") == "completed"
            and entry.get("fingerprint") == self.fingerprint(name)
            and self.dir.output(name).exists()
        )

    # -- running --------------------------------------------------------------------------
    def _stage(self, name: str) -> bool:
        """Run one stage; False when it stopped short and later stages must wait."""
        if self._complete(name):
            log.info("stage %s: complete, skipped", name)
            return True
        if BY_NAME[name].runs_models and not self._hardware_recorded:
            self.manifest.update(hardware=hardware().as_dict(), dtypes=_log_dtypes(self.cfg))
            self._hardware_recorded = True
        entry = self._started(name)
        start = time.monotonic()
        try:
            counts = BY_NAME[name].run(self)
        except BaseException as exc:
            self._failed(name, entry, exc)
            raise
        self.ran.append(name)
        reason = _partial_reason(counts)
        entry.update(
            status="partial" if reason else "completed",
            finished_at=_now(),
            seconds=round(time.monotonic() - start, 2),
            counts=counts,
            output_hash=folder_hash(self.dir.output(name)),
        )
        if reason:
            entry["partial_reason"] = reason
        for transient in ("error", "progress", "spent_usd"):
            entry.pop(transient, None)
        self._write_manifest()
        log.info(
            "stage %s: %s in %.1fs %s",
            name,
            entry["status"],
            entry["seconds"],
            counts,
            extra={"event": "stage_finished", "stage": name, "status": entry["status"],
                   "seconds": entry["seconds"], "counts": counts},
        )  # fmt: skip
        if reason:
            log.warning("stage %s: %s", name, _PARTIAL_ADVICE[reason].format(**counts))
        return not reason

    def _started(self, name: str) -> dict[str, Any]:
        entry = {"status": "running", "fingerprint": self.fingerprint(name), "started_at": _now()}
        earlier = stage_cost(self.manifest["stages"].get(name, {}))
        if earlier:  # what earlier attempts paid stays on the run's bill
            entry["spent_before_usd"] = earlier
        self._spent_at_start = self.budget.spent
        self.manifest["stages"][name] = entry
        self._write_manifest()
        log.info("stage %s: started", name, extra={"event": "stage_started", "stage": name})
        return entry

    def _failed(self, name: str, entry: dict[str, Any], exc: BaseException) -> None:
        entry.update(
            status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
            error=f"{type(exc).__name__}: {exc}",
            finished_at=_now(),
            spent_usd=self._spent_so_far(),
        )
        entry.pop("progress", None)
        try:
            self._write_manifest()
        except DiskFullError:  # the error being raised names what filled the disk first
            log.warning("stage %s: the manifest could not record its failure (disk full)", name)
        log.error(
            "stage %s: %s: %s",
            name,
            entry["status"],
            entry["error"],
            extra={"event": "stage_failed", "stage": name, "error": entry["error"]},
        )

    def _progress(self, info: dict) -> None:
        """Progress of the running stage into the manifest, for ``rlaif status``."""
        running = [e for e in self.manifest["stages"].values() if e.get("status") == "running"]
        if running:
            progress = {**info, "updated_at": _now()}
            running[0].update(progress=progress, spent_usd=self._spent_so_far())
            # progress is for `rlaif status`: a full disk is said by the write that matters
            # (a judgment the store refuses names the store and what will be asked again)
            with contextlib.suppress(DiskFullError):
                self._write_manifest()

    def _spent_so_far(self) -> float:
        """Judge spending of the running stage, so a crash does not erase it from the bill."""
        return round(self.budget.spent - self._spent_at_start, 6)

    # -- manifest -------------------------------------------------------------------------
    def _load_manifest(self, rubrics: dict[str, str]) -> dict[str, Any]:
        manifest = self.dir.recover_manifest()
        manifest.setdefault("created_at", _now())
        manifest.setdefault("stages", {})
        manifest.update(
            pipeline=self.cfg.name,
            run_dir=str(self.dir),
            source=self.source,
            config=self.cfg.model_dump(mode="json"),
            config_hash=self.cfg.hash(),
            # a run of stages that ask no judge checked no rubric: the last ones stay
            rubrics=rubrics or manifest.get("rubrics", {}),
            versions=_versions(),
            **self.extra,
        )
        if self.start:
            manifest["start_policy"] = self.start.as_dict()
        return manifest

    def _write_manifest(self) -> None:
        self.manifest["updated_at"] = _now()
        self.dir.write_manifest(self.manifest)


_PARTIAL_ADVICE = {
    "waiting": "{pending} judgments wait on provider batches; later stages wait. Re-run later "
    "to collect them (nothing is submitted twice).",
    "budget": "stopped at the budget (judge.max_cost_usd); later stages wait. Re-run to "
    "continue: judgments already made are free.",
    "failures": "{error} judgments failed ({failures[reasons]}); later stages wait. Re-run to "
    "ask the {failures[retryable]} that may still succeed (answers already stored are free).",
}


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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
