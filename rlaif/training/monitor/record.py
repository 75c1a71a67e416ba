"""The monitor's record on disk: each check a line of ``monitor.jsonl``, the policy of the last
approved check in ``approved/``, both beside the checkpoints so a resumed run keeps them; and
what it hands the train stage at the end."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Check:
    step: int
    reward: float | None
    kl: float
    length_ratio: float
    repetition: float
    refusal: float
    win_rate: float | None
    rule: str | None = None
    """The stop rule this check fired, None when it approved the policy."""
    attacks: float = 0.0
    """The share of answers that carry the mark of a judge attack ``rlaif judge-audit`` tries
    (a forged delimiter, a claimed verdict, an appeal to the evaluator, an empty answer)."""
    components: dict[str, float] = field(default_factory=dict)
    """Each reward component's mean since the previous check (``reward:`` components), so a
    check shows which part of the reward moved."""
    staleness: float | None = None
    """The most steps between a judgment the reward reused from the store and the step that
    reused it, since the previous check (an off-policy trainer's rewards grow stale)."""

    def metrics(self) -> dict[str, float]:
        """What the trackers (``train.report_to``) get, under ``monitor/``."""
        measured = {
            "kl": self.kl,
            "length_ratio": self.length_ratio,
            "repetition": self.repetition,
            "refusal": self.refusal,
            "attacks": self.attacks,
            "win_rate": self.win_rate,
            "reward": self.reward,
            **{f"reward/{name}": value for name, value in self.components.items()},
            "staleness": self.staleness,
        }
        return {f"monitor/{k}": v for k, v in measured.items() if v is not None}


class Record:
    """``folder``'s ``monitor.jsonl`` and ``approved/``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.log_path = folder / "monitor.jsonl"
        self.approved_dir = folder / "approved"

    def read(self, up_to: int) -> list[Check]:
        """The checks an earlier try made up to step ``up_to`` (where training resumes)."""
        if not self.log_path.exists():
            return []
        rows = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return [Check(**r) for r in rows if r["step"] <= up_to]

    def rewrite(self, checks: list[Check]) -> None:
        """The record as ``checks`` (a resumed run drops the checks after its step)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        kept = self.log_path.with_suffix(".tmp")
        kept.write_text("".join(json.dumps(asdict(c)) + "\n" for c in checks))
        kept.replace(self.log_path)

    def append(self, check: Check) -> None:
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(asdict(check)) + "\n")

    def approve(self, policy: Any, tokenizer: Any) -> None:
        """Keep ``policy`` as the last approved one (written aside, then swapped in)."""
        tmp = self.folder / ".approved.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if self.approved_dir.exists():
            shutil.rmtree(self.approved_dir)
        tmp.rename(self.approved_dir)

    def hand_over(self, output_dir: Path, summary: dict[str, Any], stopped: bool) -> None:
        """The record beside the trained policy, the summary as ``monitor.json``, and after a
        stop the last approved policy as ``output_dir/model``."""
        shutil.copyfile(self.log_path, output_dir / "monitor.jsonl")
        if stopped:
            target = output_dir / "model"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(self.approved_dir, target)
        (output_dir / "monitor.json").write_text(json.dumps(summary, indent=1))


def summary(checks: list[Check], stopped: Check | None) -> dict[str, Any]:
    """What the train stage reports: the checks made, the last, the kept policy's win rate,
    and after a stop the rule, its step and the step of the policy kept (the last approved
    one, or the start if none was)."""
    approved = [c for c in checks if c.rule is None]
    kept = (approved[-1:] or checks[:1]) if stopped is not None else checks[-1:]
    out: dict[str, Any] = {
        "checks": len(checks),
        "last": asdict(checks[-1]) if checks else None,
        "kept_win_rate": kept[0].win_rate if kept else None,
    }
    if stopped is not None:
        out |= {"stopped": stopped.rule, "stopped_at": stopped.step, "kept_step": kept[0].step}
    return out
