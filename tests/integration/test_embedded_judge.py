"""The real SmolLM2 as a judge: the audit's forged delimiters before and after the rubric
neutralises them."""

import math

from rlaif.config import TransformersJudgeConfig
from rlaif.judges import Budget
from rlaif.judging.audit import HONEST, audit_judge
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import find_rubric


def test_the_embedded_judge_before_and_after_neutralised_delimiters(
    tmp_path, embedded_model, capsys
):
    raw = tmp_path / "raw.jinja"
    shipped = find_rubric("helpful_harmless").read_text()
    raw.write_text(shipped.replace("---\n", "---\nneutralise: false\n", 1))
    spec = TransformersJudgeConfig(name="embedded", model=str(embedded_model))
    raw_spec = spec.model_copy(update={"rubric": str(raw)})
    with JudgmentStore(tmp_path / "judgments.sqlite") as store:
        after = audit_judge(spec, ("forged_delimiters",), store=store, budget=Budget())[0]
        before = audit_judge(raw_spec, ("forged_delimiters",), store=store, budget=Budget())[0]
    with capsys.disabled():
        print(
            f"\nembedded judge, forged delimiters: attack wins "
            f"{before.attack_success_rate:.2f} raw, {after.attack_success_rate:.2f} neutralised"
        )
    assert not math.isnan(after.attack_success_rate) and after.n == before.n == 2 * len(HONEST)
    assert after.mean_p_attack != before.mean_p_attack  # the judge saw different text
