"""DPO whose every pair keeps its judge's confidence (``train.dpo.soft_labels``).

trl's DPO has one global ``label_smoothing``; here each pair's ``p_chosen`` is its target:
the conservative DPO loss -p log s(bh) - (1-p) log s(-bh), h the pair's implicit reward
margin. Its gradient vanishes where s(bh) = p, so a judge's 0.55 asks for a small margin
and a 0.99 for a large one, where the hard loss asks every pair for an unbounded one.

The loss is written as trl's sigmoid loss plus a term: -p log s(x) - (1-p) log s(-x) equals
-log s(x) + (1-p) x, because log s(x) - log s(-x) = x. trl computes the first part with all
its metrics; the second needs each pair's margin h, read from the policy's forward (caught
by a hook) and the reference log-probabilities precomputed into the batch.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer

SOFT_COLUMN = "p_chosen"


class SoftLabelDPOTrainer(DPOTrainer):
    """``trl.DPOTrainer`` with the sigmoid loss, reference log-probabilities precomputed and
    a ``p_chosen`` column in the training data."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.loss_types != ["sigmoid"] or not self.precompute_ref_logps:
            raise ValueError("soft labels need loss_type ['sigmoid'] and precomputed ref logps")
        collate = self.data_collator

        def with_targets(examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collate(examples)
            batch[SOFT_COLUMN] = torch.tensor([float(e[SOFT_COLUMN]) for e in examples])
            return batch

        self.data_collator = with_targets

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if SOFT_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SOFT_COLUMN]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs.pop(SOFT_COLUMN)
        caught: list[torch.Tensor] = []
        hook = self.accelerator.unwrap_model(model).register_forward_hook(
            lambda _module, _args, out: caught.append(out.log_probs)
        )
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            hook.remove()
        loss = result[0] if return_outputs else result
        margin = self.beta * implicit_margin(caught[0], inputs)
        loss = loss + ((1.0 - target.to(margin.device)) * margin).mean()
        return (loss, result[1]) if return_outputs else loss


def implicit_margin(log_probs: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """h per pair: (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)),
    from the policy's per-token log-probabilities of the batch [chosen..., rejected...]
    (zero outside the completions)."""
    seq_len = inputs["completion_mask"].size(1) - 1
    chosen, rejected = log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
    return (chosen - inputs["ref_chosen_logps"]) - (rejected - inputs["ref_rejected_logps"])
