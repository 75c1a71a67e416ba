"""``train.monitor``: its measures and stop rules, and a monitor that stops DPO, GRPO and PPO
on the tiny model, keeps the last approved policy, exits 9 from the CLI and ends a chain of
rounds."""

import json

import pytest
import torch
from cli_runner import run_cli
from configs_for_tests import pipeline, rounds_config, write
from datasets import Dataset
from pydantic import ValidationError
from safetensors.torch import load_file
from trackers_for_tests import scalars

from rlaif.config import JudgeConfig, MonitorConfig, PPOConfig, PythonJudgeConfig, TrainConfig
from rlaif.judging.audit import CASES, HARMFUL, HONEST, attack_marks
from rlaif.ops.rounds import run_rounds
from rlaif.run.runner import Pipeline
from rlaif.stages import train
from rlaif.training.monitor import Check, Monitor
from rlaif.training.monitor.measures import REFUSAL, repetition
from rlaif.training.monitor.rules import fired_rule
from rlaif.training.monitor.trainer_log import last_reward
from rlaif.training.ppo import train_ppo

SHORTER = {"backend": "python", "callable": "judges_for_tests:prefer_shorter"}


def test_repetition_refusal_and_the_reward_since_the_last_check():
    assert repetition("the cat sat on the mat") == 0.0
    assert repetition("I am helpful. I am helpful. I am helpful.") == pytest.approx(4 / 7)
    assert REFUSAL.search("Sorry, I can't help with that") and not REFUSAL.search("I can help")
    history = [{"loss": 1, "step": 1}, {"reward": 0.2, "step": 1}, {"reward": 0.4, "step": 2},
               {"rewards/margins": 0.9, "step": 3}]  # fmt: skip
    assert last_reward(history, since=1) == pytest.approx(0.65)
    assert last_reward(history, since=5) == 0.9  # nothing newer: the newest
    assert last_reward([{"loss": 1}], since=0) is None


def test_attack_marks_name_what_judge_audit_tries_and_leave_honest_answers_alone():
    for case in CASES:
        for prompt, honest in HONEST:
            for label in "AB":
                marks = attack_marks(case.attack(prompt, honest, label))
                if case.name in ("padding", "length_only"):  # repetition, length ratio
                    assert marks == []
                else:
                    assert (case.name if case.name != "whitespace" else "empty") in marks
    fair = [h for _, h in HONEST] + [r for _, r, _ in HARMFUL]
    fair += ["Use a <b>bold</b> tag.", "The best answer is a calm one.", "Winner: a tie."]
    assert [attack_marks(text) for text in fair] == [[]] * len(fair)
    cfg = MonitorConfig(stop={"max_attacks": 0.1})
    gamed = Check(step=2, reward=1, kl=0, length_ratio=1, repetition=0, refusal=0, win_rate=None,
                  attacks=0.25)  # fmt: skip
    assert fired_rule(cfg.stop, [], gamed) == "attacks 0.25 > 0.1 (stop.max_attacks)"
    assert gamed.metrics()["monitor/attacks"] == 0.25


def checks(*pairs):
    return [
        Check(step=i, reward=r, kl=0.0, length_ratio=1.0, repetition=0.0, refusal=0.0, win_rate=w)
        for i, (r, w) in enumerate(pairs)
    ]


def test_the_hacking_rule_wants_the_reward_up_and_the_win_rate_down(tmp_path):
    cfg = MonitorConfig(judges=[SHORTER], stop={"win_rate_drop": 0.2, "window": 3, "max_kl": 5})

    def rule(check, stop=cfg.stop):
        return fired_rule(stop, checks((0.1, 0.6), (0.3, 0.5)), check)

    assert "win rate fell 0.6 -> 0.3" in rule(checks((0.5, 0.3))[0])
    assert rule(checks((0.5, 0.45))[0]) is None  # fell 0.15: under the limit
    assert rule(checks((0.05, 0.3))[0]) is None  # the reward fell too: no hacking
    over = Check(step=9, reward=1, kl=6.0, length_ratio=1, repetition=0, refusal=0, win_rate=0.6)
    assert rule(over) == "kl 6 > 5 (stop.max_kl)"
    floor = MonitorConfig(judges=[SHORTER], stop={"min_win_rate": 0.3}).stop
    assert rule(checks((0.5, 0.25))[0], floor) == "win_rate 0.25 < 0.3 (stop.min_win_rate)"
    assert rule(checks((0.5, 0.3))[0], floor) is None
    for name in ("win_rate_drop", "min_win_rate"):
        with pytest.raises(ValidationError, match=f"stop.{name} needs monitor judges"):
            MonitorConfig(stop={name: 0.1})
    for sharded in ("fsdp", "deepspeed_zero3"):  # each process must hold the whole policy
        if sharded == "deepspeed_zero3":
            sharded = tmp_path / "zero3.yaml"
            sharded.write_text("distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 3\n")
        with pytest.raises(ValidationError, match="which FSDP and DeepSpeed ZeRO-3 shard"):
            TrainConfig(monitor={}, accelerate_config=str(sharded))
    for whole in ("cpu", "multi_gpu", "deepspeed_zero2"):
        assert TrainConfig(monitor={}, accelerate_config=whole).monitor is not None


def monitored(**stop):
    return {"every_steps": 2, "prompts": 2, "max_new_tokens": 8, "stop": stop}


DPO = {"max_steps": 4, "per_device_train_batch_size": 2, "learning_rate": 1e-2}


def test_a_rule_stops_dpo_keeps_the_approved_policy_and_exits_9(tmp_path, tiny_model):
    watch = {**monitored(max_kl=1e-6), "judges": [SHORTER]}
    cfg = pipeline(tmp_path, tiny_model, sample={"n": 3}, train={"dpo": DPO, "monitor": watch})
    done = run_cli("run", write(tmp_path, cfg), "--run-dir", tmp_path / "run")
    assert done.returncode == 9, done.stderr
    assert "monitor stopped training at step 2: kl" in done.stderr
    assert "(stop.max_kl); train/model is the policy of step 0" in done.stderr
    record = (tmp_path / "run/train/monitor.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in record]
    assert [r["step"] for r in rows] == [0, 2]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4) and rows[0]["rule"] is None
    assert rows[0]["win_rate"] == 0.5  # the SFT model against itself
    assert rows[1]["kl"] > 1e-6 and rows[1]["rule"].startswith("kl ")
    log = json.loads((tmp_path / "run/train/log_history.json").read_text())
    assert max(r["step"] for r in log) == 2  # stopped: not the 4 steps asked for
    kept = load_file(tmp_path / "run/train/model/model.safetensors")
    start = load_file(tiny_model / "model.safetensors")
    assert all(torch.equal(start[k], kept[k]) for k in start if k in kept)  # step 0: SFT
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["stages"]["evaluate"]["status"] == "completed"  # evaluated what was kept
    assert manifest["stages"]["train"]["counts"]["monitor"]["kept_step"] == 0
    assert (tmp_path / "run/evaluation/plots/monitor_curves.png").is_file()
    status = run_cli("status", tmp_path / "run")
    assert "monitor: 2 checks; step 2:" in status.stdout and "kept step 0" in status.stdout
    page = run_cli("report", tmp_path / "run")
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "run/report/index.html").read_text()
    assert "monitor_curves.png" in html and "train.monitor stopped training" in html


def test_no_rule_fires_and_dpo_trains_to_the_end(tmp_path, tiny_model):
    watch = monitored(max_kl=1e6, max_refusal=1.0)
    train_cfg = {"dpo": DPO, "monitor": watch, "report_to": ["tensorboard"]}
    cfg = pipeline(tmp_path, tiny_model, sample={"n": 3}, train=train_cfg)
    result = Pipeline.from_yaml(write(tmp_path, cfg)).run(stages=["train"], run_dir=tmp_path / "r")
    monitor = result.manifest["stages"]["train"]["counts"]["monitor"]
    assert monitor["checks"] == 3 and "stopped" not in monitor
    assert monitor["last"]["step"] == 4 and monitor["last"]["win_rate"] is None  # no judges
    # every check reaches the trackers; the trainer's own log is left as it was
    events = next((tmp_path / "r").rglob("dpo/tensorboard/**/events.out.*")).parent
    checks = [json.loads(c) for c in (tmp_path / "r/train/monitor.jsonl").read_text().splitlines()]
    got = scalars(events)
    assert got["train/monitor/kl"] == pytest.approx([c["kl"] for c in checks], abs=1e-6)
    assert len(got["train/monitor/length_ratio"]) == 3 and "train/monitor/win_rate" not in got
    log = json.loads((tmp_path / "r/train/log_history.json").read_text())
    assert not any(k.startswith("monitor/") for entry in log for k in entry)
    trained = load_file(tmp_path / "r/train/model/model.safetensors")
    start = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(start[k], trained[k]) for k in start if k in trained)


def test_grpo_and_ppo_stop_on_a_length_rule(tmp_path, tiny_model):
    prefs = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"Say hi {i}"}],
          "chosen": [{"role": "assistant", "content": "Hi."}],
          "rejected": [{"role": "assistant", "content": "Hello there."}]} for i in range(4)]
    )  # fmt: skip
    # a length ratio under 0.5 never holds for answers as long as the SFT model's: it fires
    # at the first check after the start
    rule = monitored(max_length_ratio=0.5)
    cfg = TrainConfig(
        method="grpo",
        grpo={"max_steps": 4, "num_generations": 2, "per_device_train_batch_size": 4,
              "max_completion_length": 6, "learning_rate": 1e-3},
        monitor={**rule, "every_steps": 1},
    )  # fmt: skip
    judges = JudgeConfig(judges=[PythonJudgeConfig(callable="judges_for_tests:prefer_shorter")])
    out = tmp_path / "grpo"
    train(prefs, cfg, model=str(tiny_model), output_dir=out, judges=judges,
          store=tmp_path / "j.sqlite", monitor_prompts=["Hi?", "Name a colour."])  # fmt: skip
    summary = json.loads((out / "monitor.json").read_text())
    assert summary["stopped"].startswith("length_ratio 1 > 0.5")
    # the start itself broke the rule: its check keeps the start and training stops at once
    assert summary["stopped_at"] == 0 and summary["kept_step"] == 0

    watch = MonitorConfig(**{**rule, "stop": {"max_kl": 1e-6}})
    monitor = Monitor(watch, prompts=["Hi?"], reference=str(tiny_model), folder=tmp_path / "m")
    prompts = Dataset.from_dict({"prompt": [f"Tell me about {i}" for i in range(4)]})
    ppo = PPOConfig(steps=6, rollout_batch_size=4, minibatch_size=2, max_new_tokens=6,
                    learning_rate=1e-3)  # fmt: skip
    log = train_ppo(prompts, ppo, model=str(tiny_model), reward_fn=lambda p, r: [1.0] * len(r),
                    output_dir=tmp_path / "ppo", monitor=monitor,
                    report_to=["tensorboard"])  # fmt: skip
    assert len(log) == 2  # checked at 0 (approved), stopped at 2
    summary = json.loads((tmp_path / "ppo" / "monitor.json").read_text())
    assert summary["stopped_at"] == 2 and summary["kept_step"] == 0
    assert [c.step for c in monitor.checks] == [0, 2] and monitor.checks[1].reward == 1.0
    events = next((tmp_path / "ppo/checkpoints/ppo/tensorboard").rglob("events.out.*")).parent
    got = scalars(events)
    assert got["monitor/kl"] == pytest.approx([c.kl for c in monitor.checks], abs=1e-6)
    assert got["monitor/reward"] == [1.0]  # the start's check had no reward yet


def test_a_round_the_monitor_stops_ends_the_chain(tmp_path, tiny_model):
    cfg = rounds_config(tmp_path, tiny_model)
    cfg["train"]["monitor"] = {**monitored(max_kl=1e-6), "every_steps": 1}
    result = run_rounds(Pipeline.from_yaml(write(tmp_path, cfg)), tmp_path / "rounds")
    assert len(result.rounds) == 1 and "train.monitor stopped training" in result.stopped
    assert not (tmp_path / "rounds" / "round-2").exists()


def test_a_round_that_does_not_beat_the_one_before_on_the_monitor_ends_the_chain(
    tmp_path, tiny_model
):
    """A monitor judge that only follows the order shown gives every policy 0.5 against the
    SFT model (both orders), which does not beat the SFT model's own 0.5."""
    cfg = rounds_config(tmp_path, tiny_model, count=3)
    biased = {"backend": "python", "callable": "judges_for_tests:first_always"}
    cfg["train"]["monitor"] = {**monitored(min_round_gain=0.0), "judges": [biased]}
    result = run_rounds(Pipeline.from_yaml(write(tmp_path, cfg)), tmp_path / "rounds")
    assert len(result.rounds) == 1 and not (tmp_path / "rounds" / "round-2").exists()
    assert result.stopped == (
        "round 1: the monitor judges' win rate against the SFT model is 0.500, not above the "
        "SFT model's 0.500 by more than train.monitor.stop.min_round_gain 0.0"
    )
    summary = json.loads((tmp_path / "rounds/round-1/train/monitor.json").read_text())
    assert summary["kept_win_rate"] == 0.5 and "stopped" not in summary
    with pytest.raises(ValidationError, match="stop.min_round_gain needs monitor judges"):
        MonitorConfig(stop={"min_round_gain": 0.1})
