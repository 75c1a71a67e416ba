"""How the answers Ray Data's vLLM stage streams back, one row each, are gathered into the
sample stage's chunks (no Ray needed: the rows are made here)."""

import random

from rlaif.executors.ray_vllm import gather


def test_answers_streamed_in_any_order_are_gathered_into_their_chunks():
    """Ray Data's vLLM stage gives one row per answer, in no set order: each chunk is handed on
    once complete, its prompts and answers in place, a greedy answer repeated ``n`` times."""

    def answers(sizes: dict[int, int], copies: int) -> list[dict]:
        rows = [
            {"chunk": c, "row": r, "copy": k, "text": f"{c}/{r}/{k}", "n_tokens": k + 1,
             "finished": k % 2 == 0}
            for c, size in sizes.items() for r in range(size) for k in range(copies)
        ]  # fmt: skip
        random.Random(0).shuffle(rows)
        return rows

    sizes = {3: 2, 7: 1, 8: 3}
    sampled = list(gather(answers(sizes, 2), sizes, copies=2, n=2))
    assert sorted(index for index, _ in sampled) == [3, 7, 8]
    for index, chunk in sampled:
        assert [[c.text for c in cs] for cs in chunk] == [
            [f"{index}/{r}/0", f"{index}/{r}/1"] for r in range(sizes[index])
        ]
        first_prompt = [(c.n_tokens, c.finished) for c in chunk[0]]
        assert first_prompt == [(1, True), (2, False)]
    # a chunk is handed on when its last answer arrives, before later chunks are complete
    rows = sorted(answers(sizes, 2), key=lambda row: row["chunk"] != 7)
    assert next(gather(iter(rows), sizes, copies=2, n=2))[0] == 7

    greedy = dict(gather(answers({0: 2}, 1), {0: 2}, copies=1, n=3))
    assert [[c.text for c in cs] for cs in greedy[0]] == [["0/0/0"] * 3, ["0/1/0"] * 3]
