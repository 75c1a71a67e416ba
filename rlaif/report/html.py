"""``rlaif report RUN_DIR``: one HTML page with the run's summary, plots and tables.

The page references its PNGs by relative path from the same folder rather than embedding them
as base64: the HTML stays small and readable, each PNG can be pasted into an issue or a slide
on its own, and the folder (``index.html`` plus its PNGs) moves or uploads as a unit.
Everything from the run (prompts, responses, error messages, judge names) is escaped by
Jinja's autoescaping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from rlaif.chat import transcript
from rlaif.report import figures, run_data
from rlaif.run.run_dir import OUTPUT_DIRS, RunDir, read_chain, run_cost, stage_cost
from rlaif.run.stage_table import NAMES

log = logging.getLogger(__name__)

EXAMPLES = 5
"""Held-out prompts shown with both answers in the evaluation section."""

_JUDGE_COLUMNS = (
    ("judgments", "judgments"),
    ("valid", "valid"),
    ("first_position_win_rate", "first-position win rate"),
    ("position_consistency", "position consistency"),
    ("longer_win_rate", "longer-answer win rate"),
    ("length_slope", "length slope"),
)
_EVALUATION_ROWS = (
    ("n", "judged prompts"),
    ("win_rate", "win rate (ties count half)"),
    ("ci_low", "95% CI low"),
    ("ci_high", "95% CI high"),
    ("lc_win_rate", "length-controlled win rate"),
    ("soft_win_rate", "soft win rate (mean P(policy wins))"),
    ("wins", "wins"),
    ("ties", "ties"),
    ("losses", "losses"),
    ("unjudged", "unjudged"),
    ("kl_to_sft", "KL(policy || SFT), nats"),
    ("mean_chars_policy", "mean characters, policy"),
    ("mean_chars_reference", "mean characters, SFT"),
    ("vs_previous", "against the policy this run started from (on-policy rounds)"),
)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``index.html`` and its PNGs into ``out`` (default ``RUN_DIR/report``) and return
    the page's path. Whatever the run lacks is named on the page as absent."""
    run_dir = Path(run_dir)
    out_dir = Path(out) if out is not None else run_dir / "report"
    if not RunDir(run_dir).has_manifest() and run_data.reward_log(run_dir):
        out_dir.mkdir(parents=True, exist_ok=True)  # a trainer's folder an adapter logged to
        sections = [_section("reward", "Reward", lambda: _reward(run_dir, out_dir))]
        return _write_page(out_dir, f"rlaif report: the reward in {run_dir}", run_dir, sections)
    if (chain := read_chain(run_dir)) is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        sections = [_section("rounds", "Rounds", lambda: _rounds(chain))]
        return _write_page(out_dir, f"rlaif report: rounds in {run_dir}", run_dir, sections)
    manifest = run_data.manifest(run_dir)  # no run here: said before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    judgments = _guarded("judgments", lambda: run_data.judgments(run_dir))
    sections = [
        _section("summary", "Run summary", lambda: _summary(run_dir, manifest)),
        _section("training", "Training", lambda: _training(run_dir, out_dir)),
        _section("evaluation", "Evaluation", lambda: _evaluation(run_dir, manifest, out_dir)),
        _section("judges", "Judges", lambda: _judges(run_dir, manifest, judgments, out_dir)),
        _section("audit", "Judge audit", lambda: _audit(run_dir)),
        _section("cost", "Cost", lambda: _cost(run_dir, manifest, out_dir)),
    ]
    title = f"rlaif report: {manifest.get('pipeline', run_dir.name)}"
    return _write_page(out_dir, title, run_dir, sections)


def _write_page(out_dir: Path, title: str, run_dir: Path, sections: list[dict]) -> Path:
    page = (
        _environment()
        .get_template("report.html.jinja")
        .render(title=title, run_dir=str(run_dir), sections=sections)
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _section(key: str, title: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A section with its figures, tables and absent pieces. An unreadable piece (a truncated
    dataset, a hand-edited JSON) becomes a note on the page instead of losing the whole report,
    which is read after the fact, often because something went wrong."""
    section = {"id": key, "title": title, "how": "", "figures": [], "tables": [], "absent": []}
    try:
        section.update(build())
    except Exception as exc:  # noqa: BLE001 (see docstring)
        log.warning("report: %s section could not be built: %s", key, exc)
        section["absent"].append(f"could not be read: {type(exc).__name__}: {exc}")
    return section


def _guarded(what: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 (the sections that need it say it is absent)
        log.warning("report: %s could not be read: %s", what, exc)
        return None


def _summary(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    stages = manifest.get("stages", {})
    rows = []
    for name in NAMES:
        entry = stages.get(name, {})
        counts = entry.get("counts") or {}
        rows.append(
            [
                name,
                entry.get("status", "not run"),
                "" if entry.get("seconds") is None else f"{entry['seconds']:.1f}",
                ", ".join(f"{k}={_format(v)}" for k, v in counts.items()),
                entry.get("error", ""),
            ]
        )
    config_hash = str(manifest.get("config_hash", ""))
    facts = [
        ["pipeline", manifest.get("pipeline", "")],
        ["run directory", str(run_dir)],
        ["config hash", config_hash[:12] or "absent"],
        ["config source", manifest.get("source") or ""],
        ["model", (manifest.get("config") or {}).get("model", "")],
        ["train method", ((manifest.get("config") or {}).get("train") or {}).get("method", "")],
        ["created", manifest.get("created_at", "")],
        ["updated", manifest.get("updated_at", "")],
    ]
    if "nightly" in manifest:
        facts.append(["night", (manifest["nightly"] or {}).get("date", "")])
    cost = run_cost(manifest)
    facts.append(["judge cost", "not recorded" if cost is None else f"${cost:.4f}"])
    built = _parts(
        "Each stage's status, wall time and counts, as in the manifest. A failed stage "
        "shows its error; stages after it are 'not run', and their sections below say so."
    )
    built["tables"] = [
        {"caption": "run", "header": ["", ""], "rows": facts},
        {
            "caption": "stages",
            "header": ["stage", "status", "seconds", "counts", "error"],
            "rows": rows,
        },
    ]
    return built


def _training(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    built = _parts(
        "DPO: the loss should fall from log 2 = 0.693 and the reward margin rise. PPO: "
        "the reward should rise while KL to the SFT model stays within budget; response "
        "length collapsing toward zero or growing without end means the policy found a "
        "shortcut in the reward."
    )
    curves = figures.training_plot(run_dir, out_dir)
    if curves:
        built["figures"].append(_figure(curves, out_dir, "training curves by step"))
    else:
        built["absent"].append(
            f"training log ({OUTPUT_DIRS['train']}/log): the train stage has not completed"
        )
    monitor = figures.monitor_plot(run_dir, out_dir)
    if monitor:
        built["figures"].append(
            _figure(monitor, out_dir, "train.monitor by check: what the reward does not measure")
        )
        summary = run_data.manifest(run_dir)["stages"]["train"].get("counts", {}).get("monitor")
        if summary and summary.get("stopped"):
            built["tables"].append(
                _key_values(
                    "train.monitor stopped training",
                    {k: summary[k] for k in ("stopped", "stopped_at", "kept_step")},
                )
            )
    metrics = run_data.reward_model_metrics(run_dir)
    if metrics:
        built["tables"].append(_key_values("reward model", metrics))
    components = figures.reward_plot(RunDir(run_dir).output("train"), out_dir)
    if components:
        built["figures"].append(
            _figure(components, out_dir, "the reward's components by step (reward:)")
        )
    return built


def _reward(folder: Path, out_dir: Path) -> dict[str, Any]:
    """A trainer's output folder that ``rlaif.rewards`` logged to: the reward's components by
    step, and what the judges did."""
    built = _parts(
        "Each component's mean by step and the weighted total: a total that rises while one "
        "component falls says which part the policy traded away. Staleness is the most "
        "steps between a reused judgment and the step that reused it."
    )
    built["figures"].append(
        _figure(figures.reward_plot(folder, out_dir), out_dir, "reward components by step")
    )
    entries = run_data.reward_log(folder) or []
    judged = [j for e in entries for j in e.get("judges", [])]
    built["tables"].append(
        _key_values(
            "judges over the run",
            {
                "reward calls": len(entries),
                "judgments": sum(j["judgments"] for j in judged),
                "calls paid": sum(j["calls"] for j in judged),
                "cost (USD)": round(sum(j["cost_usd"] for j in judged), 6),
                "answers no judge scored": sum(j["unanswered"] for j in judged),
            },
        )
    )
    return built


def _rounds(chain: dict[str, Any]) -> dict[str, Any]:
    """The chain of on-policy rounds: how each round's policy did, by round."""
    built = _parts(
        "Each round sampled from the policy before it (round 1: the SFT model) and trained "
        "from it. Win rates are on the same held-out prompts: against the SFT model, and "
        "against the round before (the gain a round adds; round 1's is against SFT). Each "
        "round's own report: rlaif report <its run directory>."
    )
    built["tables"].append(
        {
            "caption": f"{len(chain['rounds'])} rounds"
            + (f"; stopped early: {chain['stopped']}" if chain.get("stopped") else ""),
            "header": [
                "round",
                "sampled from",
                "vs SFT",
                "95% CI",
                "LC vs SFT",
                "vs previous",
                "95% CI",
                "KL to SFT",
                "mean chars",
                "run directory",
            ],
            "rows": [
                [
                    r["index"],
                    r["sampled_from"],
                    _format(r["win_rate_vs_sft"]),
                    _format(r["ci_vs_sft"]),
                    _format(r["lc_win_rate_vs_sft"]),
                    _format(r["win_rate_vs_previous"]),
                    _format(r["ci_vs_previous"]),
                    _format(r["kl_to_sft"]),
                    _format(r["mean_chars"]),
                    r["run_dir"],
                ]
                for r in chain["rounds"]
            ],
        }
    )
    return built


def _evaluation(run_dir: Path, manifest: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    built = _parts(
        "Win rate is P(policy beats SFT) on held-out prompts by the same judges (0.5 = "
        "no change); trust it when its 95% interval excludes 0.5. A length-controlled win "
        "rate well below the raw one means the policy wins by being longer (or shorter), not "
        "better. The histograms show how answer length moved."
    )
    summary = run_data.evaluation_summary(run_dir, manifest)
    plot = figures.win_rate_plot(summary, out_dir)
    if summary:
        labels = dict(_EVALUATION_ROWS)
        rows = [[labels.get(k, k), _format(v)] for k, v in summary.items()]
        built["tables"].append({"caption": "evaluation", "header": ["", ""], "rows": rows})
    if plot:
        built["figures"].append(_figure(plot, out_dir, "win rate against the SFT model"))
    else:
        built["absent"].append(
            f"evaluation summary ({OUTPUT_DIRS['evaluate']}/summary.json): the evaluate stage "
            "has not completed"
        )
    rows = run_data.evaluation_rows(run_dir)
    drift = figures.length_drift_plot(rows, out_dir)
    if drift is None:
        built["absent"].append(f"held-out answers ({OUTPUT_DIRS['evaluate']}/): not written")
        return built
    built["figures"].append(_figure(drift, out_dir, "response-length drift, policy vs SFT"))
    lengths = run_data.length_drift(run_dir)
    built["tables"].append(
        {
            "caption": f"response length on {lengths['n']} held-out prompts",
            "header": ["", "policy", "SFT", "change", "policy / SFT"],
            "rows": [
                [
                    key.replace("_", " "),
                    _format(lengths["policy"][key]),
                    _format(lengths["reference"][key]),
                    _format(lengths["change"][key]),
                    _format(lengths["change"][f"{key}_ratio"]),
                ]
                for key in lengths["policy"]
            ],
        }
    )
    examples = rows.head(EXAMPLES)
    built["tables"].append(
        {
            "caption": f"first {len(examples)} held-out prompts",
            "header": ["prompt", "policy", "SFT", "P(policy wins)"],
            "rows": [
                [transcript(r.prompt), r.policy_response, r.reference_response, _format(r.p_policy)]
                for r in examples.itertuples()
            ],
            "long": True,
        }
    )
    return built


def _judges(
    run_dir: Path, manifest: dict[str, Any], judgments: pd.DataFrame | None, out_dir: Path
) -> dict[str, Any]:
    built = _parts(
        "First-position win rate far from 0.5 = position bias (judging both orders "
        "cancels it). Low position consistency = the judge is unsure or guesses by position. "
        "Longer-answer win rate far from 0.5, a steep length slope or a tilted length curve = "
        "length bias. Agreement: Cohen's kappa 1 = the judges agree, 0 = no better than chance; "
        "with one judge, the judge against itself with the answers swapped (points on the "
        "diagonal = consistent)."
    )
    report = run_data.judge_report(run_dir, manifest)
    if report is None and judgments is not None:
        from rlaif.debias.bias import judge_report

        report = judge_report(judgments)
        built["absent"].append(
            "judge report: neither the manifest nor preferences/judge_report.json has one "
            "(the aggregate stage writes it); the figures here are computed from the judgments"
        )
    if report is None:
        built["absent"].append(
            f"judgments ({OUTPUT_DIRS['judge']}/): the judge stage has not completed"
        )
        return built
    header = ["judge", *(label for _, label in _JUDGE_COLUMNS)]
    rows = [
        [name, *(_format(entry.get(key)) for key, _ in _JUDGE_COLUMNS)]
        for name, entry in report.get("judges", {}).items()
    ]
    built["tables"].append({"caption": "judge report", "header": header, "rows": rows})
    agreement = report.get("agreement")
    if agreement:
        rows = [
            [f"Cohen's kappa {pair}", _format(k)] for pair, k in agreement["cohen_kappa"].items()
        ]
        rows.append(["Krippendorff's alpha", _format(agreement.get("krippendorff_alpha"))])
        built["tables"].append({"caption": "agreement", "header": ["", ""], "rows": rows})
    bias = figures.position_bias_plot(report, out_dir)
    if bias:
        built["figures"].append(_figure(bias, out_dir, "position bias per judge"))
    else:
        built["absent"].append("position bias: no pairwise judgments")
    agree, self_kappa = figures.agreement_plot(report, judgments, out_dir)
    if agree:
        caption = "agreement between judges"
        if self_kappa is not None:
            caption = f"one judge against itself across orders (Cohen's kappa {self_kappa})"
        built["figures"].append(_figure(agree, out_dir, caption))
    else:
        built["absent"].append("agreement: needs several judges, or one judge in both orders")
    relation = figures.length_relation_plot(judgments, out_dir)
    if relation:
        built["figures"].append(
            _figure(relation, out_dir, "P(a wins) against the length difference, binned")
        )
    else:
        built["absent"].append(
            f"length relation: needs the judgments dataset ({OUTPUT_DIRS['judge']}/)"
        )
    return built


def _cost(run_dir: Path, manifest: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    built = _parts(
        "Judge spend in USD as the stages recorded it (judge and evaluate); a local or "
        "rule judge costs nothing and records no cost. For nightly runs, one bar per night in "
        "the same folder: a jump means more judgments were paid for (fewer cache hits, a "
        "larger sample, a pricier judge)."
    )
    per_stage = [
        [name, _format(stage_cost(entry))]
        for name, entry in manifest.get("stages", {}).items()
        if stage_cost(entry) is not None
    ]
    if per_stage:
        built["tables"].append(
            {"caption": "cost (USD)", "header": ["stage", "USD"], "rows": per_stage}
        )
    else:
        built["absent"].append("cost: no stage recorded counts.cost_usd (a local judge is free)")
    cached = [
        [name, f"{c['cached_share']:.1%}", c["cached_input_tokens"], c["cache_write_tokens"],
         _format(c["saved_usd"])]
        for name, entry in manifest.get("stages", {}).items()
        if (c := (entry.get("counts") or {}).get("prompt_cache"))
    ]  # fmt: skip
    if cached:
        built["tables"].append(
            {
                "caption": "prompt cache: input the providers read from their caches, and "
                "what that saved against the full input price",
                "header": ["stage", "input cached", "tokens read", "tokens written", "saved USD"],
                "rows": cached,
            }
        )
    nights = run_data.nightly_costs(run_dir, manifest)
    plot = figures.cost_plot(nights, out_dir)
    if plot:
        built["figures"].append(_figure(plot, out_dir, f"cost per night ({len(nights)} nights)"))
    else:
        built["absent"].append("cost per night: not a nightly run (no 'nightly' in the manifest)")
    return built


def _audit(run_dir: Path) -> dict[str, Any]:
    built = _parts(
        "How often each attack beat an honest answer (in both positions; a tie counts half) "
        "and how often the winner flipped with the order, from rlaif judge-audit. A high rate "
        "is a way the policy can game this judge."
    )
    found = run_data.judge_audit(run_dir)
    if found is None:
        built["absent"].append("judge audit: no judge_audit.json (run rlaif judge-audit)")
        return built
    path, audit = found
    built["tables"].append(
        {
            "caption": f"{path} (threshold {audit['threshold']}: "
            f"{'passed' if audit['passed'] else 'failed'})",
            "header": ["judge", "case", "attack wins", "order flips", "n"],
            "rows": [
                [
                    r["judge"],
                    r["case"],
                    _format(r["attack_success_rate"]),
                    _format(r["position_flips"]),
                    str(r["n"]),
                ]
                for r in audit["results"]
            ],
        }
    )
    return built


def _parts(how: str) -> dict[str, Any]:
    """A section's content: a "how to read this" line, figures, tables, absent pieces."""
    return {"how": how, "figures": [], "tables": [], "absent": []}


def _figure(path: Path, out_dir: Path, caption: str) -> dict[str, str]:
    return {"src": path.relative_to(out_dir).as_posix(), "caption": caption}


def _key_values(caption: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "caption": caption,
        "header": ["", ""],
        "rows": [[k, _format(v)] for k, v in values.items()],
    }


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
