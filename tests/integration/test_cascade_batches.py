"""``judge.cascade`` with API judges through provider batches on the loopback server: one
batch per round (the cheap judge's, then the strong judge's for the unsure pairs only), each
collected by the next run, and the strong judge's verdict deciding those pairs."""

from datasets import Dataset

from rlaif.config import AggregateConfig, JudgeConfig
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.stages import aggregate, judge
from rlaif.testing.batch_server import LoopbackBatchServer


def pairs() -> Dataset:
    """Six pairs; the loopback judge prefers the shorter answer (P 0.8) and cannot tell two
    answers of one length apart (P 0.5): those two pairs are the unsure ones."""
    answers = [
        ("ok", "a longer answer"),
        ("same one", "same two"),
        ("tiny", "a bit longer"),
        ("xx", "yy"),
        ("short", "much much longer"),
        ("one", "a second longer one"),
    ]
    return Dataset.from_dict(
        {
            "pair_id": [f"p{i}:0-1" for i in range(6)],
            "prompt_id": [f"p{i}" for i in range(6)],
            "prompt": [f"Question {i}?" for i in range(6)],
            "index_a": [0] * 6,
            "index_b": [1] * 6,
            "response_a": [a for a, _ in answers],
            "response_b": [b for _, b in answers],
        }
    )


def test_a_cascade_through_provider_batches_asks_the_strong_judge_in_a_round_of_its_own(tmp_path):
    with LoopbackBatchServer() as server:
        common = {"model": "judge-model", "api_key_env": None, "batch": {"enabled": True}}
        cheap = {"name": "cheap", "backend": "openai", "base_url": server.openai_url,
                 "rubric": "helpful_harmless", **common}  # fmt: skip
        strong = {"name": "strong", "backend": "anthropic", "base_url": server.url,
                  "rubric": "helpful_harmless_json", **common}  # fmt: skip
        cfg = JudgeConfig(judges=[cheap, strong], cascade={"strong": "strong", "threshold": 0.1})
        submitted = []
        with JudgmentStore(tmp_path / "j.sqlite") as store:
            for _ in range(3):  # three nights: submit, collect and escalate, collect
                rows = judge(pairs(), cfg, store=store, budget=Budget(), batch_dir=tmp_path / "b")
                submitted.append(sorted(server.open_batches()))
                server.complete_batches()
            rows = judge(pairs(), cfg, store=store, budget=Budget(), batch_dir=tmp_path / "b")
    batches = list(server.batches.values())
    assert [len(b.requests) for b in batches] == [12, 4]  # both orders of 6, then of the 2 unsure
    assert submitted[2] == []  # the third night only collected
    strong_rows = [r for r in rows if r["judge"] == "strong"]
    assert sorted({r["pair_id"] for r in strong_rows}) == ["p1:0-1", "p3:0-1"]
    assert set(rows["status"]) == {"ok"}
    prefs = aggregate(rows, AggregateConfig(ties="keep"))
    by = dict(zip(prefs["pair_id"], prefs["judges"], strict=True))
    assert by["p1:0-1"] == ["strong"] and by["p0:0-1"] == ["cheap"]
