"""A user's own TRL GRPO script, rewarded by ``rlaif.rewards.TrlReward`` with a mixed reward
(a listwise rule judge ranking each group's completions, shorter first, and a verifiable
check: the answer ends a sentence), moves the embedded SmolLM2 toward what the reward asks:
against the SFT model on held-out prompts, judged by the shorter-answer rule, it wins at least
65% of the time within 6 nats of KL, and its per-component curves are in the report."""

import json
import os
import subprocess
import sys
import time

import yaml
from cli_runner import SUPPORT

from rlaif.config import EvaluateConfig, JudgeConfig, PythonJudgeConfig, SampleConfig
from rlaif.models.loading import DEFAULT_MODEL, resolve_model
from rlaif.report import write_report
from rlaif.stages.evaluate import evaluate, win_rate
from rlaif.training.kl import estimate_kl

MIN_WIN_RATE = 0.65
MAX_KL = 6.0

SCRIPT = """
import sys
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from rlaif.config import PromptsConfig
from rlaif.prompts import load_prompts, split_prompts
from rlaif.rewards import TrlReward

pipeline, model, out = sys.argv[1:4]
prompts = PromptsConfig(limit=64, eval_size=16)
train, _ = split_prompts(load_prompts(prompts), prompts)
dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}]
                                        for p in train["prompt"]]})
reward = TrlReward.from_yaml(pipeline, log_dir=out)
args = GRPOConfig(
    output_dir=out, max_steps=12, learning_rate=5e-5, beta=0.04, num_generations=4,
    per_device_train_batch_size=8, max_completion_length=32, temperature=1.0,
    logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", seed=0,
)
trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset)
trainer.train()
trainer.save_model(out + "/model")
trainer.processing_class.save_pretrained(out + "/model")
reward.close()
"""


def test_a_users_grpo_script_with_a_mixed_reward_beats_sft(tmp_path, capsys):
    model = resolve_model(DEFAULT_MODEL)
    pipeline = tmp_path / "reward.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "name": "mixed",
                "model": str(model),
                "output_dir": str(tmp_path / "outputs"),
                "judge": {
                    "judges": [
                        {
                            "name": "shorter",
                            "backend": "python",
                            "mode": "listwise",
                            "callable": "rlaif.judges.rules:rank_shorter",
                        }
                    ],
                    "cache": str(tmp_path / "judgments.sqlite"),
                },  # fmt: skip
                "reward": {
                    "components": [
                        {"kind": "judge", "judge": "shorter", "weight": 1.0},
                        {
                            "kind": "regex",
                            "name": "finished",
                            "pattern": r"[.!?]\s*$",
                            "weight": 0.5,
                        },
                    ]  # fmt: skip
                },
            }
        )
    )
    script = tmp_path / "user_grpo.py"
    script.write_text(SCRIPT)
    out = tmp_path / "grpo"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(pipeline), str(model), str(out)],
        env={**os.environ, "PYTHONPATH": str(SUPPORT)}, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trained = time.monotonic() - start

    from rlaif.config import PromptsConfig
    from rlaif.judging.store import JudgmentStore
    from rlaif.prompts import load_prompts, split_prompts

    prompts = PromptsConfig(limit=64, eval_size=16)
    _, held_out = split_prompts(load_prompts(prompts), prompts)
    rule = JudgeConfig(
        judges=[PythonJudgeConfig(name="rule", callable="rlaif.judges.rules:prefer_shorter")]
    )
    sample = SampleConfig(backend="transformers", dtype="float32", max_new_tokens=32)
    with JudgmentStore(tmp_path / "eval.sqlite") as store:
        rows = evaluate(
            held_out, EvaluateConfig(max_new_tokens=32), policy=out / "model",
            reference=str(model), sample_cfg=sample, judge_cfg=rule, store=store,
        )  # fmt: skip
    rate = win_rate(rows["p_policy"])
    kl = estimate_kl(out / "model", model, list(held_out["prompt"]), max_new_tokens=32,
                     dtype="float32")  # fmt: skip
    steps = [json.loads(x) for x in (out / "reward_log.jsonl").read_text().splitlines()]
    first, last = steps[0]["components"], steps[-1]["components"]
    with capsys.disabled():
        print(
            f"\nTRL GRPO, mixed reward: win rate {rate.win_rate:.3f} (95% CI "
            f"{rate.ci_low:.3f}-{rate.ci_high:.3f}, n={rate.n}; {rate.wins} wins, {rate.ties} "
            f"ties, {rate.losses} losses), KL {kl:.2f} nats, train {trained / 60:.1f} min; "
            f"components step 0 -> {len(steps) - 1}: shorter {first['shorter']['mean']:.3f} -> "
            f"{last['shorter']['mean']:.3f}, finished {first['finished']['mean']:.3f} -> "
            f"{last['finished']['mean']:.3f}"
        )
    page = write_report(out)
    assert (page.parent / "reward_components.png").exists()
    assert len(steps) == 12 and set(first) == {"shorter", "finished"}
    assert rate.win_rate >= MIN_WIN_RATE
    assert 0.0 < kl < MAX_KL
