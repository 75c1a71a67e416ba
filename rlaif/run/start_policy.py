"""A trained policy a run starts from instead of the SFT model.

On-policy rounds and ``nightly.policy: latest`` hand each run the policy the run before it
trained: the run samples its responses from it and training starts from it, while the SFT
model stays the DPO reference (or the start policy itself is, ``reference: previous``) and
evaluation still compares against the SFT model, and against the start policy too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rlaif.run.run_dir import RunDir


@dataclass(frozen=True)
class StartPolicy:
    path: Path
    """The policy's model folder (``<run>/train/model``)."""
    identity: str
    """The content hash of the train output that holds it: a run started from it is stale
    when it changes."""
    origin: str
    """The run directory that trained it."""
    reference: Literal["sft", "previous"] = "sft"
    """DPO's reference: the SFT model, or this policy."""

    @classmethod
    def trained_by(
        cls, run_dir: Path, reference: Literal["sft", "previous"] = "sft"
    ) -> StartPolicy | None:
        """The policy ``run_dir``'s completed train stage saved, if it has one."""
        run = RunDir(run_dir)
        entry = run.read_manifest()["stages"].get("train", {}) if run.has_manifest() else {}
        if entry.get("status") != "completed" or not run.policy.exists():
            return None
        return cls(run.policy, entry["output_hash"], str(run_dir), reference)

    def covered(self) -> list[str]:
        """What a stage's fingerprint covers of it."""
        return [str(self.path), self.identity, self.reference]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}
