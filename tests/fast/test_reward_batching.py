"""``serve-reward``'s batcher: requests share batches fairly, and a batch that raises is
scored again request by request so only the request at fault fails."""

import asyncio

import pytest

from rlaif.judging.reward import Scored
from rlaif.ops.reward_server import BadRequest, _Batcher, check_json


class Scorer:
    """Scores an item by its response's length; raises on a response saying 'poison'."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def score(self, items):
        responses = [r for _, r, _ in items]
        self.batches.append(responses)
        if any("poison" in r for r in responses):
            raise ValueError("poisoned item")
        return [Scored(float(len(r))) for r in responses], {"judgments": len(items)}


def run(batcher, *requests):
    async def main():
        return await asyncio.gather(
            *(batcher.score(items) for items in requests), return_exceptions=True
        )

    return asyncio.run(main())


def items(*responses):
    return [("p", r, "label") for r in responses]


def test_a_raising_batch_fails_only_the_request_at_fault():
    scorer = Scorer()
    good, bad, other = items("a", "bb"), items("poison"), items("ccc")
    got = run(_Batcher(scorer), good, bad, other)
    assert [s.value for s in got[0][0]] == [1.0, 2.0]
    assert isinstance(got[1], ValueError)
    assert [s.value for s in got[2][0]] == [3.0]
    assert scorer.batches[0] == ["a", "bb", "poison", "ccc"]  # together first, then alone
    assert ["poison"] in scorer.batches[1:]


def test_a_huge_request_takes_its_share_of_each_batch():
    scorer = Scorer()
    batcher = _Batcher(scorer, max_batch=8)
    huge = items(*(f"x{i}" for i in range(40)))
    small = [items(f"s{i}") for i in range(3)]
    got = run(batcher, huge, *small)
    assert [s.value for s in got[0][0]] == [float(len(f"x{i}")) for i in range(40)]
    assert all(len(g[0]) == 1 for g in got[1:])
    first = scorer.batches[0]
    assert len(first) == 8 and {"s0", "s1", "s2"} <= set(first)  # small ones in the first batch
    assert all(len(b) <= 8 for b in scorer.batches)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"prompts": ["ok", "p\ud800"]}, "'prompts.1': not valid Unicode"),
        ({"a": [[[[[[[[[["deep"]]]]]]]]]]}, "nested deeper than 8"),
    ],
)
def test_json_that_is_no_text_or_too_deep_is_refused(value, message):
    with pytest.raises(BadRequest, match=message):
        check_json(value)
    check_json({"prompts": [[{"role": "user", "content": "héllo ✓"}]]})


def test_a_prompt_cut_from_the_left_leaves_only_the_answer(tiny_model):
    """OpenRLHF keeps a long prompt's last tokens in the query but sends the whole prompt."""
    from transformers import AutoTokenizer

    from rlaif.rewards.turns import TurnText

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = TurnText(tokenizer)
    long = "Background: " + "many words of context " * 200 + "\nQuestion: name a colour."
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": long}], tokenize=False, add_generation_prompt=True
    )
    answer = "Blue.<|im_end|>"
    for kept in (len(prompt), 3000, 400, 70, 25):
        query = prompt[-kept:] + answer
        assert text.clean(text.response(query, prompt)) == "Blue.", kept
    assert text.prompt(prompt).endswith("Question: name a colour.")
