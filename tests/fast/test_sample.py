import importlib.util

from datasets import Dataset

from rlaif.config import SampleConfig
from rlaif.sampling import pick_backend
from rlaif.stages import sample


def prompts(n=3):
    return Dataset.from_dict(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"Tell me about {i}" for i in range(n)],
            "category": [""] * n,
        }
    )


def test_n_responses_per_prompt_in_input_order(tiny_model):
    cfg = SampleConfig(backend="transformers", n=3, max_new_tokens=5, batch_size=4, dtype="float32")
    out = sample(prompts(), cfg, model=str(tiny_model))
    assert out["prompt_id"] == ["p0", "p1", "p2"]
    assert [len(r) for r in out["responses"]] == [3, 3, 3]
    for tokens, finished in zip(out["n_tokens"], out["finished"], strict=True):
        assert all(1 <= t <= 5 for t in tokens)
        assert all(f == (t < 5) for t, f in zip(tokens, finished, strict=True))


def test_sampling_is_seeded(tiny_model):
    cfg = SampleConfig(backend="transformers", n=2, max_new_tokens=6, dtype="float32", seed=3)
    a = sample(prompts(2), cfg, model=str(tiny_model))["responses"]
    b = sample(prompts(2), cfg, model=str(tiny_model))["responses"]
    c = sample(prompts(2), cfg.model_copy(update={"seed": 4}), model=str(tiny_model))["responses"]
    assert a == b
    assert a != c


def test_greedy_gives_identical_responses(tiny_model):
    cfg = SampleConfig(
        backend="transformers", n=2, max_new_tokens=6, temperature=0.0, dtype="float32"
    )
    out = sample(prompts(2), cfg, model=str(tiny_model))
    assert all(r[0] == r[1] for r in out["responses"])


def test_auto_backend_without_vllm_is_transformers():
    if importlib.util.find_spec("vllm") is None:
        assert pick_backend("auto") == "transformers"
    assert pick_backend("transformers") == "transformers"
