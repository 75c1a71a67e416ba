"""A user's own TRL GRPO script rewarded by ``rlaif.rewards.TrlReward``, run in a process of
its own the way a user runs it, for the integration and evidence tiers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cli_runner import SUPPORT

SCRIPT = """
import sys
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from rlaif.rewards import TrlReward

pipeline, out, kind, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "text":
    rows = [{{"prompt": f"Compute {{i}} + {{i}}.", "answer": str(2 * i)}} for i in range(8)]
else:
    rows = [{{"prompt": [{{"role": "system", "content": "Be brief."}},
                        {{"role": "user", "content": f"Name fruit number {{i}}."}}]}}
            for i in range(8)]
reward = TrlReward.from_yaml(pipeline, log_dir=out)
args = GRPOConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=4,
                  num_generations=4, max_completion_length=8, learning_rate=1e-5,
                  logging_steps=1, report_to=[], use_cpu=True, save_strategy="steps",
                  save_steps=1, seed=0)
trainer = GRPOTrainer(model={model!r}, reward_funcs=[reward], args=args,
                      train_dataset=Dataset.from_list(rows))
trainer.train(resume_from_checkpoint=len(sys.argv) > 5)
print("LOG", __import__("json").dumps(trainer.state.log_history))
reward.close()
"""


def reward_pipeline(tmp_path, **reward) -> dict:
    return {
        "name": "trl-reward",
        "output_dir": str(tmp_path / "out"),
        "judge": {
            "judges": [
                {"name": "rule", "backend": "python", "callable": "judges_for_tests:slow_logged"},
                {
                    "name": "ranker",
                    "backend": "python",
                    "mode": "listwise",
                    "callable": "judges_for_tests:rank_shorter",
                },
            ],  # fmt: skip
            "cache": str(tmp_path / "judgments.sqlite"),
        },
        "reward": reward,
    }


def run_script(tmp_path, tiny_model, pipeline, kind, steps=2, resume=False, background=False):
    script = tmp_path / "user_grpo.py"
    script.write_text(SCRIPT.format(model=str(tiny_model)))
    args = [sys.executable, str(script), str(pipeline), str(tmp_path / "trl"), kind, str(steps)]
    env = {
        **os.environ,
        "PYTHONPATH": str(SUPPORT),
        "RLAIF_TEST_CALL_LOG": str(tmp_path / "calls.jsonl"),
    }
    if background:
        return subprocess.Popen([*args, *(["resume"] if resume else [])], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    done = subprocess.run(
        [*args, *(["resume"] if resume else [])], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOG "))
    return json.loads(line.removeprefix("LOG "))
