"""``train.monitor``: watch the policy while it trains, apart from its reward, and stop it.

A reward can be hacked (answers that grow without end, a phrase the judge likes); the KL
penalty only slows that. The monitor answers a fixed set of held-out prompts greedily every
``every_steps`` steps (and once before the first, so step 0 is the SFT model) and measures the
answers against the SFT model's: length ratio, repetition, refusals, KL(policy || SFT) from
sampled answers, and with judges of its own the win rate. Every check is appended to
``monitor.jsonl`` (beside the checkpoints, so a resumed run keeps them) and the run log. A check
no stop rule objects to is approved, and the policy is saved as it is; when a rule fires,
training stops and the last approved policy becomes ``train/model``.

:class:`Monitor` (``monitor.py``) coordinates a check; what it measures in the answers is in
``measures.py``, the stop rules in ``rules.py``, the record on disk in ``record.py``, what it
reads of a trainer's log in ``trainer_log.py``, and the TRL callback in ``callback.py``. The
same monitor serves every trainer: TRL's (DPO, GRPO) through :func:`watch_training`, the PPO
loop by calling :meth:`Monitor.check` itself.
"""

from rlaif.training.monitor.callback import watch_training
from rlaif.training.monitor.monitor import Monitor
from rlaif.training.monitor.record import Check

__all__ = ["Check", "Monitor", "watch_training"]
