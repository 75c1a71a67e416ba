"""Training under ``accelerate launch`` (a real subprocess) on the tiny model: one CPU process
with the shipped config, two CPU processes (DDP over gloo), and a failing child whose output
comes back in the error."""

import json
import socket
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from rlaif.config import PPOConfig, RewardModelConfig, TrainConfig
from rlaif.errors import RlaifError
from rlaif.stages import train

PROMPTS = Dataset.from_dict({"prompt": [f"Tell me about {i}" for i in range(6)]})


def preferences(n=8):
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say hi {i}"}],
                "chosen": [{"role": "assistant", "content": "Hi."}],
                "rejected": [{"role": "assistant", "content": "Hello there, how are you?"}],
            }
            for i in range(n)
        ]
    )


def test_dpo_through_accelerate_launch_with_the_shipped_cpu_config(tmp_path, tiny_model, repo_root):
    cfg = TrainConfig(
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_steps=1,
        accelerate_config=str(repo_root / "pipelines/accelerate/cpu.yaml"),
    )
    log = train(
        preferences(),
        cfg,
        model=str(tiny_model),
        output_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert [x for x in log["loss"] if x is not None][-1] < 0.6931
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "ckpt" / "dpo" / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (tmp_path / "ckpt" / "dpo" / "checkpoint-2").exists()  # the model is saved instead
    assert "train_runtime" in (tmp_path / "out" / "launch" / "output.log").read_text()


def two_cpu_processes(tmp_path) -> Path:
    """An accelerate config for DDP over gloo on two CPU processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "two_cpu.yaml"
    # MULTI_GPU with use_cpu: torchrun starts the processes; accelerate joins them over gloo
    # (MULTI_CPU itself needs mpirun for more than one process).
    config.write_text(
        "distributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: 1\nmachine_rank: 0\n"
        f"use_cpu: true\nmixed_precision: 'no'\nmain_process_ip: 127.0.0.1\n"
        f"main_process_port: {port}\n"
    )
    return config


def test_rm_ppo_on_two_cpu_processes(tmp_path, tiny_model):
    config = two_cpu_processes(tmp_path)
    cfg = TrainConfig(
        method="rm_ppo",
        save_steps=1,
        accelerate_config=str(config),
        reward_model=RewardModelConfig(max_steps=2, eval_fraction=0.25),
        ppo=PPOConfig(
            steps=2, rollout_batch_size=2, minibatch_size=2, max_new_tokens=5, learning_rate=1e-3
        ),
    )
    log = train(
        preferences(),
        cfg,
        model=str(tiny_model),
        output_dir=tmp_path / "out",
        prompts=PROMPTS,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert log["step"] == [1, 2]
    output = (tmp_path / "out" / "launch" / "output.log").read_text()
    assert "ppo: process 1 of 2" in output and "ppo: process 2 of 2" in output
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "reward_model_metrics.json").is_file()
    assert sorted(p.name for p in (tmp_path / "ckpt" / "ppo").iterdir()) == ["step-1"]


def test_the_monitor_stops_dpo_on_two_processes_at_one_step(tmp_path, tiny_model):
    """Both processes answer the monitor's prompts; the main one decides, writes and keeps
    the approved policy; both stop at the step it names (a process left training would hang
    the other's next all-reduce)."""
    cfg = TrainConfig(
        dpo={"max_steps": 12, "per_device_train_batch_size": 2, "learning_rate": 1e-2},
        accelerate_config=str(two_cpu_processes(tmp_path)),
        monitor={"every_steps": 2, "prompts": 2, "max_new_tokens": 6, "stop": {"max_kl": 1e-6}},
    )
    out = tmp_path / "out"
    log = train(preferences(), cfg, model=str(tiny_model), output_dir=out,
                checkpoint_dir=tmp_path / "ckpt", monitor_prompts=["Hi?", "Colour?"])  # fmt: skip
    summary = json.loads((out / "monitor.json").read_text())
    checks = [json.loads(c) for c in (out / "monitor.jsonl").read_text().splitlines()]
    steps = [c["step"] for c in checks]
    assert steps == list(range(0, steps[-1] + 1, 2))  # written once, not once per process
    assert checks[-1]["rule"].startswith("kl ") and summary["stopped_at"] == steps[-1]
    assert max(s for s in log["step"] if s is not None) == steps[-1]  # training stopped there
    output = (out / "launch" / "output.log").read_text()
    said = f"(stop.max_kl) at step {steps[-1]}; training stops"
    assert output.count(said) == 2  # each process stopped at the main one's step
    kept = load_file(out / "model" / "model.safetensors")
    approved = load_file(tmp_path / "ckpt" / "monitor" / "approved" / "model.safetensors")
    assert all(torch.equal(kept[k], approved[k]) for k in approved)


def test_a_failing_launch_reports_the_child_output(tmp_path, repo_root):
    config = str(repo_root / "pipelines/accelerate/cpu.yaml")
    cfg = TrainConfig(max_steps=1, accelerate_config=config)
    with pytest.raises(RlaifError, match="failed \\(exit code") as err:
        train(preferences(), cfg, model="no-such-model", output_dir=tmp_path / "out")
    assert "unknown model reference 'no-such-model'" in str(err.value)
    assert str(tmp_path / "out" / "launch" / "output.log") in str(err.value)
