"""Finding and writing training checkpoints so a restarted run picks up where it stopped.

The trl trainers write ``checkpoint-N`` folders, ``trainer_state.json`` last; PPO writes
``step-N`` folders through a temporary name and a rename. Either way only a complete folder
counts, so a crash in the middle of a save falls back to the one before.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_TRAINER = re.compile(r"^checkpoint-(\d+)$")
_PPO = re.compile(r"^step-(\d+)$")


def no_final_checkpoint():
    """A ``transformers`` callback that skips the checkpoint a ``Trainer`` writes after its
    last step: the trained model is saved right after, and a checkpoint (optimizer state
    included, three times the model's size) would only cost time and disk."""
    from transformers import TrainerCallback

    class _NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False
            return control

    return _NoFinalCheckpoint()


def last_trainer_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` of a ``transformers.Trainer`` under ``folder``."""
    done = [p for p in _numbered(folder, _TRAINER) if (p / "trainer_state.json").is_file()]
    return done[-1] if done else None


def ppo_steps(folder: Path) -> list[Path]:
    """The complete PPO ``step-N`` folders under ``folder``, oldest first."""
    return _numbered(folder, _PPO)


def ppo_step_dir(folder: Path, step: int) -> Path:
    return folder / f"step-{step}"


def publish(tmp: Path, target: Path, *, keep: int) -> None:
    """Rename a fully written ``tmp`` to ``target``, then drop all but the newest ``keep``."""
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    for old in ppo_steps(target.parent)[:-keep]:
        shutil.rmtree(old)


def remove_trainer_checkpoints(folder: Path) -> None:
    """Free the space of a finished trainer's checkpoints (optimizer state included)."""
    for path in _numbered(folder, _TRAINER):
        shutil.rmtree(path)


def _numbered(folder: Path, pattern: re.Pattern) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found) if p.is_dir()]
