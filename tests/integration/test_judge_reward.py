"""The judges as a live reward, against a real HTTP judge on loopback: every answer goes through
the judgment store and one budget, so a stopped run's successor pays nothing for what was
judged and no run pays past ``judge.max_cost_usd``."""

from configs_for_tests import api_judge

from rlaif.config import JudgeConfig
from rlaif.judges import Budget
from rlaif.judging.reward import PointwiseReward
from rlaif.judging.store import JudgmentStore
from rlaif.testing.loopback import LoopbackJudgeServer

PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 0.0}  # a few cents a call
PROMPTS = [f"Question {i}: what should I plant in spring?" for i in range(12)]
ROLLOUTS = ["Peas.", "Tomatoes, in a sunny spot, once the frost is over for the year.", "Beans."]


def judges(url: str, cap: float | None) -> JudgeConfig:
    spec = api_judge(url, rubric="ultrafeedback_helpfulness", price=PRICE, max_concurrency=2)
    return JudgeConfig.model_validate({"judges": [spec], "max_cost_usd": cap})


def test_d_rlaif_reward_is_stored_budgeted_and_never_paid_twice(tmp_path):
    prompts = PROMPTS
    responses = [ROLLOUTS[i % 3] for i in range(len(prompts))]
    with LoopbackJudgeServer() as server, JudgmentStore(tmp_path / "j.sqlite") as store:
        # what one call costs, measured by asking once on a store of its own
        with JudgmentStore(tmp_path / "probe.sqlite") as probe:
            one = PointwiseReward(judges(server.openai_url, None), probe, Budget())
            assert one(prompts[:1], responses[:1]) == [4.75]  # a short answer: 5 of 5, at p=0.9
            per_call = one.steps[-1]["cost_usd"]
        assert per_call > 0
        server.answers.clear()

        cfg = judges(server.openai_url, cap=2.5 * per_call)
        first = PointwiseReward(cfg, store, Budget(cfg.max_cost_usd))
        scores = first(prompts, responses)
        paid = sum(server.answers.values())
        # stopped at the budget: past the cap by at most what was in flight (max_concurrency 2)
        assert 3 <= paid <= 3 + 2 and len(store) == paid
        assert scores.count(3.0) >= len(prompts) - paid  # unanswered: the scale's middle
        assert first.steps[-1]["unanswered"] == len(prompts) - paid
        assert {round(s, 6) for s in scores} <= {4.75, 1.25, 3.0}  # short, long, not asked

        # a new process (a resumed run) with a fresh budget: what is stored is not asked again
        server.answers.clear()
        again = PointwiseReward(cfg, store, Budget(cfg.max_cost_usd))
        rescored = again(prompts, responses)
        assert max(server.answers.values()) == 1  # nothing asked twice...
        assert sum(server.answers.values()) == len(store) - paid  # ...and only the new ones paid
        for old, new in zip(scores, rescored, strict=True):
            assert new == old or old == 3.0  # a stored answer reads back as it was
        assert again.steps[-1]["cache_hit_rate"] > 0
