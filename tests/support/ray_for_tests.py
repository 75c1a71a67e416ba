"""What the Ray tests of both tiers share: a local Ray of two CPUs and two workers a stage."""

from __future__ import annotations

RAY = [
    "executor=ray",
    "ray.num_cpus=2",
    "ray.sample_workers=2",
    "ray.judge_workers=2",
    "ray.cpus_per_worker=0.5",
    "ray.batch_size=4",
]
"""``--set`` overrides that run a pipeline on a local Ray."""
