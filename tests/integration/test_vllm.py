"""The API backends and served sampling against a real vLLM server (the CPU build) on
127.0.0.1, started once per test run, on the embedded model (the offline engines' proofs are in
the evidence tier). Skipped where vLLM is not installed."""

import json
import urllib.request

import pytest
from datasets import load_from_disk

from rlaif.config import (
    AnthropicJudgeConfig,
    OpenAIJudgeConfig,
    SampleConfig,
    TransformersJudgeConfig,
    validate_pipeline,
)
from rlaif.errors import RlaifError
from rlaif.judges import Budget, JudgeRequest, build_judge
from rlaif.run.runner import Pipeline
from rlaif.stages.sample import sample

pytestmark = pytest.mark.vllm
REQUESTS = [
    JudgeRequest(
        "What is the capital of France?", "The capital of France is Paris.", "I like turtles."
    ),
    JudgeRequest(
        "What is the capital of France?", "I like turtles.", "The capital of France is Paris."
    ),
    JudgeRequest("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5."),
]


def run(cfg):
    out = {}
    build_judge(cfg).run(REQUESTS, out.__setitem__, Budget())
    return [out[i] for i in range(len(REQUESTS))]


def test_openai_label_probabilities_match_the_local_judge(vllm_server, embedded_model):
    served = run(OpenAIJudgeConfig(model="smol", base_url=f"{vllm_server}/v1", api_key_env=None))
    local = run(TransformersJudgeConfig(model=str(embedded_model)))
    for api, mine in zip(served, local, strict=True):
        assert api.status == "ok" and api.input_tokens > 0 and api.output_tokens == 1
        assert api.label_mass > 0.05
        # the same model read two ways: top_logprobs over HTTP vs logits in-process
        assert api.p_first == pytest.approx(mine.p_first, abs=0.02)


def test_openai_json_schema_output(vllm_server):
    out = run(
        OpenAIJudgeConfig(
            model="smol",
            base_url=f"{vllm_server}/v1",
            api_key_env=None,
            rubric="helpful_harmless_json",
            max_tokens=80,
        )
    )
    for verdict in out:
        assert verdict.status == "ok", verdict.raw_output
        assert json.loads(verdict.raw_output)["winner"] == verdict.verdict
        assert verdict.p_first in (0.0, 1.0)


def test_anthropic_messages_endpoint(vllm_server):
    out = run(
        AnthropicJudgeConfig(
            model="smol",
            base_url=vllm_server,
            api_key_env=None,
            rubric="helpful_harmless_cot",
            max_tokens=60,
        )
    )
    for verdict in out:
        # the 135M model rarely follows the "Winner: X" format; what it said is kept either way
        assert verdict.status in ("ok", "invalid")
        assert verdict.raw_output.strip()
        assert verdict.input_tokens > 50 and verdict.output_tokens > 0
        if verdict.status == "invalid":
            assert "pattern" in verdict.error


def served_requests(url: str) -> float:
    """Requests the server has finished, from its Prometheus metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total")
    )


def test_sampling_from_a_served_model(tmp_path, vllm_server, embedded_model):
    server = {"base_url": f"{vllm_server}/v1", "served_model": "smol", "api_key_env": None}
    cfg = {
        "name": "served",
        "model": str(embedded_model),
        "output_dir": str(tmp_path / "out"),
        "prompts": {"limit": 5, "eval_size": 1},
        "sample": {"backend": "openai", "server": server, "n": 2, "max_new_tokens": 12},
        "judge": {"judges": [{"backend": "python", "callable": "judges_for_tests:prefer_shorter"}]},
        "aggregate": {"ties": "keep"},
    }
    before = served_requests(vllm_server)
    Pipeline(validate_pipeline(cfg)).run(stages=["aggregate"], run_dir=tmp_path / "run")
    assert served_requests(vllm_server) - before == 4 * 2  # vLLM counts each of the n answers
    samples = load_from_disk(str(tmp_path / "run" / "samples"))
    assert [len(r) for r in samples["responses"]] == [2, 2, 2, 2]
    tokens = [t for ts in samples["n_tokens"] for t in ts]
    assert all(0 < t <= 13 for t in tokens)
    assert len(load_from_disk(str(tmp_path / "run" / "preferences"))) > 0

    # greedy: vLLM refuses n > 1 without sampling, so one answer is asked for and repeated
    prompts = load_from_disk(str(tmp_path / "run" / "prompts" / "train"))
    greedy = SampleConfig(backend="openai", server=server, n=3, temperature=0, max_new_tokens=6)
    before = served_requests(vllm_server)
    answers = sample(prompts, greedy, model=str(embedded_model))["responses"]
    assert served_requests(vllm_server) - before == len(prompts)
    assert [len(r) for r in answers] == [3] * len(prompts)
    assert all(len(set(r)) == 1 and r[0] for r in answers)

    wrong = SampleConfig(backend="openai", server={**server, "served_model": "nope"})
    with pytest.raises(RlaifError, match="answered 404 for model 'nope'"):
        sample(
            load_from_disk(str(tmp_path / "run" / "prompts" / "train")),
            wrong,
            model=str(embedded_model),
        )
    closed = {**server, "base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    with pytest.raises(RlaifError, match="no answer from http://127.0.0.1:9/v1 after 0 retries"):
        sample(
            load_from_disk(str(tmp_path / "run" / "prompts" / "train")),
            SampleConfig(backend="openai", server=closed),
            model=str(embedded_model),
        )


def test_audit_through_the_server_before_and_after_neutralised_delimiters(
    vllm_server, tmp_path, capsys
):
    from rlaif.judges import Budget
    from rlaif.judging.audit import audit_judge
    from rlaif.judging.store import JudgmentStore
    from rlaif.rubrics import find_rubric

    raw = tmp_path / "raw.jinja"
    raw.write_text(
        find_rubric("helpful_harmless").read_text().replace("---\n", "---\nneutralise: false\n", 1)
    )
    spec = OpenAIJudgeConfig(
        name="served", model="smol", base_url=f"{vllm_server}/v1", api_key_env=None
    )
    cases = ("forged_delimiters",)  # the CPU build takes seconds a request
    unguarded = spec.model_copy(update={"rubric": str(raw)})
    with JudgmentStore(tmp_path / "judgments.sqlite") as store:
        asked = {"store": store, "budget": Budget(), "prompts": 2}
        after = {r.case: r for r in audit_judge(spec, cases, **asked)}
        before = {r.case: r for r in audit_judge(unguarded, cases, **asked)}
    with capsys.disabled():
        for case in cases:
            print(
                f"\nvLLM server judge, {case}: attack wins {before[case].attack_success_rate:.2f} "
                f"raw, {after[case].attack_success_rate:.2f} neutralised; order flips "
                f"{after[case].position_flips:.2f}"
            )
    assert all(r.n == 4 for r in after.values())  # 2 prompts x 2 orders
    forged = "forged_delimiters"
    assert after[forged].mean_p_attack != before[forged].mean_p_attack  # it saw other text
