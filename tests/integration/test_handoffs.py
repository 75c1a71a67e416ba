"""Hand-offs proven by the other trainers' own code: ``rlaif export``'s recipes parsed by
OpenRLHF's argument parsers and verl's Hydra config (with its ``validate_config``), the exported
files read by their dataset classes with the policy's tokenizer, and ``rlaif serve-reward``
called through OpenRLHF's remote-reward client and verl's custom-reward loader with the shim.

The trainers are installed ``--no-deps`` (at the releases ``rlaif.integrations.recipes.TRAINERS``
names) into a folder of their own, and run by ``tests/support/handoff_harness.py`` in a
subprocess. When a release renames a flag, this test fails."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import SUPPORT
from configs_for_tests import pipeline, write

from rlaif.config import load_pipeline
from rlaif.integrations.recipes import RECIPES
from rlaif.ops.export import export
from rlaif.ops.reward_server import Rewards, RewardServer
from rlaif.run.runner import Pipeline
from rlaif.testing.trainers import trainers_site as install_trainers

REPO = Path(__file__).resolve().parents[2]
SHORT, LONG = (
    "Cow.",
    "That would be a cow, a large domesticated animal that eats grass all day long.",
)


@pytest.fixture(scope="session")
def trainers_site() -> Path:
    """OpenRLHF and verl without their GPU dependencies, installed once per version pair."""
    if os.environ.get("RLAIF_HANDOFF_SITE"):
        return Path(os.environ["RLAIF_HANDOFF_SITE"])
    try:
        return install_trainers(REPO / ".cache")
    except RuntimeError as exc:
        pytest.skip(str(exc))


CHECKLIST = [
    {"name": "cl", "backend": "python", "mode": "checklist",
     "callable": "judges_for_tests:checked_checklist"}
]  # fmt: skip
"""The runs' judge: a checklist needs no label, so held-out prompts no stage answered export."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model):
    """A finished run whose prompts have a reference answer for half of them."""
    tmp = tmp_path_factory.mktemp("handoffs")
    rows = [
        {
            "id": f"p{i}",
            "prompt": f"Name animal number {i}.",
            "reference": "A cat." if i % 2 else None,
        }
        for i in range(10)
    ]
    (tmp / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = pipeline(
        tmp,
        tiny_model,
        judges=CHECKLIST,
        prompts={"source": str(tmp / "prompts.jsonl"), "reference_column": "reference"},
        sample={"system_prompt": "Be brief."},
    )
    Pipeline.from_yaml(write(tmp, cfg)).run(stages=["aggregate"], run_dir=tmp / "run")
    return tmp / "run"


@pytest.fixture(scope="module")
def served_pipeline(tmp_path_factory, tiny_model) -> Path:
    """The pipeline whose reward scores the trainers' answers: the shorter-answer rule against
    the prompts' labels."""
    tmp = tmp_path_factory.mktemp("served")
    return write(tmp, pipeline(tmp, tiny_model, name="rewards"))


@pytest.fixture(scope="module")
def served(served_pipeline):
    """``serve-reward`` for the pipeline above, without a token (OpenRLHF's own client)."""
    rewards = Rewards(load_pipeline(served_pipeline))
    server = RewardServer(rewards, port=0).start()
    yield server.url
    server.stop()
    rewards.close()


@pytest.fixture(scope="module")
def served_with_token(served_pipeline):
    """The same reward behind a token, for the reward file that bears it."""
    os.environ["RLAIF_TEST_HANDOFF_TOKEN"] = "tok-handoff"
    rewards = Rewards(load_pipeline(served_pipeline))
    server = RewardServer(rewards, port=0, token_env="RLAIF_TEST_HANDOFF_TOKEN").start()
    yield server.url
    server.stop()
    rewards.close()


def script_argv(path: Path, values: dict) -> list[str]:
    """The command a recipe script runs, as the shell splits it, its variables given the
    test's values (the folder's own path is ``$DATA``)."""
    command = path.read_text().rsplit("\n\n", 1)[1]
    names = {"$DATA": values["data"], "$MODEL": values["model"]}
    names["$RLAIF_REWARD_URL"] = values.get("reward_url", "")
    words = shlex.split(command.replace("\\\n", " "))
    for name, value in names.items():
        words = [w.replace(name, value) for w in words]
    return words


def harness(
    site: Path,
    trainer: str,
    tokenizer: Path,
    export_dir: Path,
    values: dict,
    reward_files: tuple[Path, ...] = (),
    env: dict | None = None,
) -> dict:
    recipes = [r for r in RECIPES if r.trainer == trainer]
    spec = {
        "trainer": trainer,
        "tokenizer": str(tokenizer),
        "end_of_turn": "<|im_end|>",
        "answers": [SHORT, LONG],
        "reward_files": [str(f) for f in reward_files],
        "recipes": [
            {
                "name": r.name,
                "module": r.launcher[-1],
                "argv": r.argv(**values),
                "env": [e.format(**values) for e in r.env],
            }
            for r in recipes
        ],
    }
    for recipe in recipes:  # the scripts export wrote run exactly what is parsed here
        script = export_dir / f"{recipe.name}.sh"
        if script.exists():
            script_values = {**values, "reward_model": str(export_dir / "reward_model")}
            got = script_argv(script, script_values)
            assert got == [*recipe.launcher, *recipe.argv(**script_values)]
    (export_dir / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(SUPPORT / "handoff_harness.py"), str(export_dir / "spec.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": f"{site}:{SUPPORT}", **(env or {})},
        cwd=export_dir,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = next(line for line in done.stdout.splitlines() if line.startswith("HARNESS "))
    return json.loads(report.removeprefix("HARNESS "))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_openrlhf_parses_the_recipes_reads_the_export_and_gets_rewards(
    trainers_site, run_dir, served, served_with_token, served_pipeline, tiny_model, tmp_path
):
    out = tmp_path / "openrlhf"
    files = export(run_dir, "openrlhf", out, reward_url=served)
    assert {f.name for f in files} >= {"openrlhf_dpo.sh", "openrlhf_rm.sh", "openrlhf_ppo.sh"}
    values = {"model": str(tiny_model), "data": str(out.resolve()), "reward_url": served}
    files = (out / "rlaif_http_reward.py", out / "rlaif_reward.py")
    env = {  # the token-bearing file asks the guarded server; the in-process one the pipeline
        "RLAIF_REWARD_URL": served_with_token,
        "RLAIF_REWARD_TOKEN": "tok-handoff",
        "RLAIF_PIPELINE": str(served_pipeline),
    }
    seen = harness(trainers_site, "openrlhf", tiny_model, out, values, files, env)

    pairs, prompts = lines(out / "preferences.jsonl"), lines(out / "prompts.jsonl")
    for name in ("openrlhf_dpo", "openrlhf_rm"):
        got = seen[name]
        assert got["args"]["data.dataset"] == str(out.resolve() / "preferences.jsonl")
        assert got["args"]["model.model_name_or_path"] == str(tiny_model)
        assert got["rows"] == len(pairs) > 0  # every pair survived their reader
        assert got["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
        assert pairs[0]["chosen"][0]["content"].strip() in got["chosen"]
    assert seen["openrlhf_dpo"]["args"]["model.beta"] == 0.1

    ppo = seen["openrlhf_ppo"]
    assert ppo["args"]["reward.remote_url"] == [f"{served}/get_reward"]
    assert ppo["args"]["algo.advantage.estimator"] == "group_norm"
    assert ppo["rows"] == len(prompts)
    assert ppo["label"] == prompts[0]["label"] != ""
    rewards = ppo["rewards"]  # one reward per query, from OpenRLHF's own client
    assert rewards[f"{SHORT}|finished"] == rewards[f"{SHORT}|cut"]  # <|im_end|> costs nothing
    assert rewards[f"{LONG}|finished"] == rewards[f"{LONG}|cut"]
    assert rewards[f"{SHORT}|finished"][0] > 0.5 > rewards[f"{LONG}|finished"][0]
    # the reward files, loaded by OpenRLHF's own loader: the token-bearing one over HTTP,
    # the in-process one with no server; the same rewards either way
    for name in ("rlaif_http_reward.py", "rlaif_reward.py"):
        assert ppo[f"rewards:{name}"] == rewards, name


def test_verl_parses_the_recipes_reads_the_export_and_gets_rewards(
    trainers_site, run_dir, served, served_pipeline, tiny_model, tmp_path
):
    out = tmp_path / "verl"
    files = export(run_dir, "verl", out, reward_url=served)
    assert {f.name for f in files} >= {"rlaif_http_reward.py", "verl_grpo_judge.sh"}
    assert not (out / "verl_grpo_reward_model.sh").exists()  # the run trained no reward model
    values = {
        "model": str(tiny_model),
        "data": str(out.resolve()),
        "reward_url": served,
        "reward_model": str(tmp_path / "reward_model"),
    }
    files = (out / "rlaif_http_reward.py", out / "rlaif_reward.py")
    env = {"RLAIF_REWARD_URL": served, "RLAIF_PIPELINE": str(served_pipeline)}
    seen = harness(trainers_site, "verl", tiny_model, out, values, files, env)

    judged = seen["verl_grpo_judge"]
    assert judged["reward"]["custom_reward_function"] == {
        "path": str(out.resolve() / "rlaif_http_reward.py"),
        "name": "compute_score",
    }
    assert judged["reward"]["reward_manager"]["name"] == "naive"
    assert judged["rows"] == len(lines_of_parquet(out / "train.parquet")) > 0
    assert judged["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    rewards = judged["rewards"]
    assert rewards[SHORT] > 0.5 > rewards[LONG]
    # both reward files through each of verl's managers: the same rewards every way
    for name in ("rlaif_http_reward.py", "rlaif_reward.py"):
        for manager, got in judged[f"managers:{name}"].items():
            assert got == pytest.approx(rewards), (name, manager)

    model = seen["verl_grpo_reward_model"]["reward"]["reward_model"]
    assert model["enable"] is True and model["model_path"] == values["reward_model"]


def lines_of_parquet(path: Path) -> list[dict]:
    import pandas as pd

    return pd.read_parquet(path).to_dict("records")


def test_every_export_carries_the_reference_or_an_sft_answer(run_dir, tmp_path):
    prompts = lines(export(run_dir, "openrlhf", tmp_path / "o")[1])
    referenced = [p for p in prompts if p["prompt_id"] in {f"p{i}" for i in range(1, 10, 2)}]
    assert referenced and all(p["label"] == "A cat." for p in referenced)
    others = [p for p in prompts if p not in referenced]
    assert others and all(p["label"] and p["label"] != "A cat." for p in others)
    verl_rows = lines_of_parquet(export(run_dir, "verl", tmp_path / "v")[0])
    truths = {r["extra_info"]["prompt_id"]: r["reward_model"]["ground_truth"] for r in verl_rows}
    assert truths == {p["prompt_id"]: p["label"] for p in prompts}


@pytest.fixture(scope="module")
def conversation_run(tmp_path_factory, tiny_model):
    """A finished run over multi-turn prompts (the shipped conversations)."""
    tmp = tmp_path_factory.mktemp("conversations")
    cfg = pipeline(
        tmp,
        tiny_model,
        judges=CHECKLIST,
        prompts={"source": "builtin_conversations", "limit": 8, "eval_size": 2},
        sample={"system_prompt": "Be brief."},
    )
    Pipeline.from_yaml(write(tmp, cfg)).run(stages=["aggregate"], run_dir=tmp / "run")
    return tmp / "run"


def test_multi_turn_exports_are_read_as_conversations_by_both_trainers(
    trainers_site, conversation_run, served, tiny_model, tmp_path
):
    values = {"model": str(tiny_model), "reward_url": served}
    out = tmp_path / "openrlhf"
    export(conversation_run, "openrlhf", out, reward_url=served)
    seen = harness(trainers_site, "openrlhf", tiny_model, out, {**values, "data": str(out)})
    pairs, prompts = lines(out / "preferences.jsonl"), lines(out / "prompts.jsonl")
    earlier = pairs[0]["prompt"][2]  # system, user, then the assistant's earlier turn
    assert earlier["role"] == "assistant" and len(pairs[0]["prompt"]) >= 4
    assert all(p["prompt"][-1]["role"] == "user" for p in [*pairs, *prompts])
    for name in ("openrlhf_dpo", "openrlhf_rm"):
        assert seen[name]["rows"] == len(pairs) > 0
        assert f"<|im_start|>assistant\n{earlier['content']}<|im_end|>" in seen[name]["prompt"]
    assert seen["openrlhf_ppo"]["rows"] == len(prompts)

    out = tmp_path / "verl"
    export(conversation_run, "verl", out, reward_url=served)
    values |= {"data": str(out), "reward_model": str(tmp_path / "reward_model")}
    judged = harness(trainers_site, "verl", tiny_model, out, values)["verl_grpo_judge"]
    rows = lines_of_parquet(out / "train.parquet")
    assert judged["rows"] == len(rows) > 0
    history = rows[0]["prompt"][2]
    assert history["role"] == "assistant"
    assert f"<|im_start|>assistant\n{history['content']}<|im_end|>" in judged["prompt"]
