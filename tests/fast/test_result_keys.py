"""What changes a result is declared on the config fields and the judges' requests: existing
run directories keep their names and fingerprints, and stores their keys (pinned below, as
the code before the declarations computed them), while a new request parameter or server keys
new answers."""

from typing import Annotated

import pytest
from pydantic import BaseModel

from rlaif.config import AnthropicJudgeConfig, OpenAIJudgeConfig, load_pipeline
from rlaif.config.result import Added, NoResult, OutOfFingerprints, Verbatim, result_dump
from rlaif.hashing import stable_hash
from rlaif.judges.anthropic import AnthropicJudge
from rlaif.judges.openai import OpenAIJudge
from rlaif.run.run_dir import RunDir
from rlaif.run.runner import _Run

STAGES = ("sample", "pair", "judge", "aggregate", "train", "evaluate")

# (shipped pipeline, --set overrides, its hash, each stage's covered inputs), each a hash's
# first 16 hex digits; output_dir is a relative folder that does not exist
PINNED = [
    ("quickstart", [], "ddb915d51ca752ee",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("nightly", [], "eea84db3d51c8a84",
     "01eaa70c863418c0 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 5ea286b11eeeeaa5 334d291a565242c6"),
    ("ray_cluster", [], "cc3c4529337bd27d",
     "a892d5e3f7d0667f 467139029f5ef08d a59d876c59a3dc71"
     " a10319be5a174aed 5ea286b11eeeeaa5 c48c141d0cd472f7"),
    ("rule_dpo", [], "6db757fea8c3c07a",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a fa57793080326ec9 6badcab73335f3ed"),
    ("rule_grpo", [], "e9f61745da04bcea",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a 02b343f486fc9e7e 6badcab73335f3ed"),
    ("rule_ppo", [], "0058f23e0d538e5f",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a ef3d1be81e5e9b9f 6badcab73335f3ed"),
    ("rule_rounds", [], "22a902d66ec0a6ef",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a fa57793080326ec9 6badcab73335f3ed"),
    ("quickstart", ["judge.max_cost_usd=5"], "e2f62d1333af7cd8",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("quickstart", ["train.report_to=[tensorboard]"], "ddb915d51ca752ee",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("quickstart", ["executor=ray"], "ddb915d51ca752ee",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("quickstart", ["judge.permutations=3"], "055646bfe39279b6",
     "d75e2ab68b5a32a3 467139029f5ef08d aa40d73682b9cb65"
     " 9bac4e959430a4fe 917f27efb57076f7 0fd1ab2f6324f9f5"),
    ("quickstart", ["judge.adaptive.threshold=0.2"], "6eedabc5944d66f8",
     "d75e2ab68b5a32a3 467139029f5ef08d 09bb828201a441d8"
     " 9bac4e959430a4fe 917f27efb57076f7 90b62e79cdf5974a"),
    ("quickstart", ["train.dpo.soft_labels=true"], "e75d464b10dc5efd",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 6b1a9ec14631d99e 8b0bccfd3051766e"),
    ("quickstart", ["aggregate.human_labels=override"], "0af7893b269a1e14",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " c5e6933da7c8171b 917f27efb57076f7 8b0bccfd3051766e"),
    ("quickstart", [
      "sample.backend=openai",
      "sample.server.base_url=http://127.0.0.1:9/v1",
     ], "87bd74929a2fc1aa",
     "298036cce2785e5d 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("quickstart", [
      "sample.backend=openai",
      "sample.server.base_url=http://127.0.0.1:9/v1",
      "sample.server.check_model=false",
     ], "87bd74929a2fc1aa",
     "298036cce2785e5d 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 917f27efb57076f7 8b0bccfd3051766e"),
    ("rule_dpo", ["judge.judges.0.mode=listwise"], "2586ba15c2f4ac4b",
     "d686f5a9289fbd7e 467139029f5ef08d ae79c71f1b7c5964"
     " 52c9e975774b648a fa57793080326ec9 378985ae6c30a40b"),
    ("rule_grpo", ["train.grpo.num_generations=4"], "e9f61745da04bcea",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a 02b343f486fc9e7e 6badcab73335f3ed"),
    ("quickstart", ["train.monitor.every_steps=5"], "bb300a2b6ee96e70",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe dcd2367725a5c4fd 8b0bccfd3051766e"),
    ("quickstart", ["train.monitor.stop.max_attacks=0.1"], "6a2733f886e28f77",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 37e433c34099a117 8b0bccfd3051766e"),
    ("quickstart", ["train.monitor.stop.max_kl=5"], "c65546ff4f7f018e",
     "d75e2ab68b5a32a3 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 81575dfcf4ce81f3 8b0bccfd3051766e"),
    ("nightly", ["nightly.policy=latest", "nightly.train=true"], "c72dd97d76694f5a",
     "01eaa70c863418c0 467139029f5ef08d 818708b9f249f9cc"
     " 9bac4e959430a4fe 5ea286b11eeeeaa5 334d291a565242c6"),
    ("ray_cluster", [
      "judge.judges.0.check_model=false",
      "judge.judges.0.base_url=http://localhost:8000/v1",
     ], "fbb34437d98e5734",
     "a892d5e3f7d0667f 467139029f5ef08d 4e9df140e8ccfbff"
     " a10319be5a174aed 5ea286b11eeeeaa5 839788e699770c04"),
    ("rule_dpo", [
      "train.monitor.judges=[{backend: python, name: m, callable: 'rlaif.judges.rules:p"
      "refer_shorter'}, {backend: openai, name: o, model: gpt-x, api_key_env: null, bas"
      "e_url: 'http://127.0.0.1:9/v1', check_model: false}]",
     ], "64246ab6d82713fb",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a 54548a99d269c2e4 6badcab73335f3ed"),
    ("rule_dpo", ["judge.judges.0.calibration=/tmp/none.json"], "42661f61f00a9fc8",
     "d686f5a9289fbd7e 467139029f5ef08d c7ff3f496338c39b"
     " 52c9e975774b648a fa57793080326ec9 6badcab73335f3ed"),
    ("ray_cluster", ["judge.max_cost_usd=12.5", "judge.judges.0.check_model=false"],
     "6c87f181a69cb7d0",
     "a892d5e3f7d0667f 467139029f5ef08d a59d876c59a3dc71"
     " a10319be5a174aed 5ea286b11eeeeaa5 c48c141d0cd472f7"),
]  # fmt: skip

WARM = {"temperature": 0.7, "max_tokens": 64}
WARM_LP = {**WARM, "top_logprobs": 5}
# (backend, rubric, settings, the judge's identity hash): no base_url
KEYS = [
    ("openai", "helpful_harmless", {}, "27db9ee5ecb6b396"),
    ("openai", "helpful_harmless", WARM_LP, "14c4086c5780b884"),
    ("openai", "helpful_harmless_json", {}, "40b1b29bc620d20c"),
    ("openai", "helpful_harmless_json", WARM_LP, "9271811bc6c1fd0b"),
    ("openai", "helpful_harmless_cot", {}, "c883c287b52538b2"),
    ("openai", "helpful_harmless_cot", WARM_LP, "172362bdcfb3413b"),
    ("anthropic", "helpful_harmless_json", {}, "c6813b9fa5e77ea3"),
    ("anthropic", "helpful_harmless_json", WARM, "146ea0fc65cff5b1"),
    ("anthropic", "helpful_harmless_cot", {}, "c84ebf1b47243a61"),
    ("anthropic", "helpful_harmless_cot", WARM, "d0c1e13ec773432a"),
]  # fmt: skip


@pytest.mark.parametrize(("pipeline", "sets", "name", "stages"), PINNED)
def test_existing_run_directories_keep_their_names_and_fingerprints(
    pipeline, sets, name, stages, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cfg = load_pipeline(pipeline, ["output_dir=pinned-out", *sets])
    assert cfg.hash()[:16] == name
    run = _Run(cfg, RunDir(tmp_path / "run"), None)
    run.train_prompts = {"prompt": ["a", "b"]}
    covered = run._covered_inputs({"j": "r"})
    assert " ".join(stable_hash(covered[s])[:16] for s in STAGES) == stages


def test_a_setting_that_changes_no_result_keeps_the_hash_and_one_that_does_not_changes_it():
    base = load_pipeline("rule_dpo")
    same = ["train.report_to=[tensorboard]", "executor=ray", "judge.judges.0.mode=pairwise"]
    for item in same:
        assert load_pipeline("rule_dpo", [item]).hash() == base.hash(), item
    for item in ["train.dpo.soft_labels=true", "judge.permutations=3", "sample.n=3"]:
        assert load_pipeline("rule_dpo", [item]).hash() != base.hash(), item
    budget = load_pipeline("rule_dpo", ["judge.max_cost_usd=3"])
    assert budget.hash() != base.hash()  # the run's name...
    assert budget.stable_dump(fingerprint=True) == base.stable_dump(fingerprint=True)  # ...only


class Inner(BaseModel):
    kept: int = 1
    quiet: Annotated[int, NoResult()] = 2
    new: Annotated[int, Added()] = 3


class Outer(BaseModel):
    inner: Inner = Inner()
    items: list[Inner] = [Inner()]
    old: Annotated[list[Inner], Verbatim("quiet")] = [Inner()]
    budget: Annotated[float, OutOfFingerprints()] = 1.0
    section: Annotated[Inner | None, Added()] = None


def test_the_markers_are_read_at_any_depth():
    assert result_dump(Outer()) == {
        "inner": {"kept": 1},
        "items": [{"kept": 1}],
        "old": [{"kept": 1, "quiet": 2}],
        "budget": 1.0,
    }
    changed = Outer(inner=Inner(new=4), section=Inner(), items=[Inner(quiet=9)])
    assert result_dump(changed)["inner"] == {"kept": 1, "new": 4}
    assert result_dump(changed)["section"] == {"kept": 1}
    assert result_dump(changed)["items"] == [{"kept": 1}]
    assert "budget" not in result_dump(Outer(), fingerprint=True)


@pytest.fixture
def keys_set(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key-0000000000")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def judge_key(backend: str, **settings) -> str:
    if backend == "openai":
        return stable_hash(OpenAIJudge(OpenAIJudgeConfig(**settings)).identity())
    return stable_hash(AnthropicJudge(AnthropicJudgeConfig(**settings)).identity())


@pytest.mark.parametrize(("backend", "rubric", "settings", "key"), KEYS)
def test_existing_stores_keep_their_keys(backend, rubric, settings, key, keys_set):
    model = "gpt-4o-mini" if backend == "openai" else "claude-x"
    assert judge_key(backend, model=model, rubric=rubric, **settings)[:16] == key


class SeededJudge(OpenAIJudge):
    """A provider module that starts sending one more parameter."""

    def request_body(self, messages):
        return {**super().request_body(messages), "seed": 7, "user": "nightly"}


def test_a_new_request_parameter_keys_new_answers_and_a_transport_field_does_not(keys_set):
    cfg = OpenAIJudgeConfig(model="gpt-4o-mini", rubric="helpful_harmless_json")
    plain, seeded = OpenAIJudge(cfg).identity(), SeededJudge(cfg).identity()
    assert seeded != plain
    assert seeded == {**plain, "seed": 7}  # "user" is transport: not keyed


def test_answers_are_keyed_per_server(keys_set, monkeypatch):
    key = lambda **kw: judge_key("openai", model="m", rubric="helpful_harmless", **kw)  # noqa: E731
    own = key()
    assert key(base_url="https://api.openai.com/v1/") == own
    local = key(base_url="http://localhost:8000/v1")
    assert local != own
    assert key(base_url="http://127.0.0.1:8000/v1/") == local
    assert key(base_url="http://127.0.0.1:8001/v1") != local
    # one deployment at two addresses, named once
    assert key(base_url="http://a:1/v1", server_id="team-vllm") == key(
        base_url="http://b:2/v1", server_id="team-vllm"
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")  # the SDK would use it
    assert key() == local
