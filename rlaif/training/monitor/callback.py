"""The monitor inside a TRL trainer (DPO, GRPO): a callback that checks when due."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlaif.training.monitor.trainer_log import last_components, last_reward, last_staleness

if TYPE_CHECKING:
    from rlaif.training.monitor.monitor import Monitor


def watch_training(trainer: Any, monitor: Monitor, tokenizer: Any) -> None:
    """Give ``trainer`` a callback that checks the policy when the monitor is due, sends each
    check to the trainer's trackers, and stops training when a rule fires."""
    from transformers import TrainerCallback

    class MonitorCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            monitor.resume(state.global_step)
            if monitor.due(state.global_step):
                self._check(state, control, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if monitor.due(state.global_step):
                self._check(state, control, model)

        def _check(self, state, control, model) -> None:
            history = state.log_history
            since = monitor.checks[-1].step if monitor.checks else -1
            check = monitor.check(
                model,
                tokenizer,
                state.global_step,
                last_reward(history, since),
                last_components(history, since),
                last_staleness(history, since),
            )
            # to the trackers only: the trainer's own log and its metric buffers stay as they
            # are (the handler's on_log clears the step's should_log, which would drop the
            # trainer's own log of every checked step)
            should_log = control.should_log
            trainer.callback_handler.on_log(trainer.args, state, control, check.metrics())
            control.should_log = should_log
            if check.rule is not None:
                control.should_training_stop = True

    trainer.add_callback(MonitorCallback())
