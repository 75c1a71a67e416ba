"""Training under ``accelerate launch``, so a multi-GPU, DeepSpeed or FSDP config just works.

The train stage writes its inputs under ``output_dir/launch/`` (the datasets and an
``args.json`` naming them) and runs ``python -m accelerate.commands.launch --config_file
CONFIG -m rlaif.training.launch ARGS.json``; every process this starts reads the same inputs
and trains, and the main one writes the training log back. The child's output is shown as it
comes, kept in ``launch/output.log``, and its last lines go into the error if it fails.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import deque
from pathlib import Path

from datasets import Dataset, load_from_disk

from rlaif.errors import RlaifError
from rlaif.pipelines import accelerate_config_path
from rlaif.training.job import TrainJob
from rlaif.training.methods import run_job

log = logging.getLogger(__name__)
TAIL_LINES = 40


def launch_training(job: TrainJob, preferences: Dataset, prompts: Dataset | None) -> Dataset:
    """Run ``job`` under ``accelerate launch --config_file job.cfg.accelerate_config``."""
    folder = job.output_dir / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    preferences.save_to_disk(str(folder / "preferences"))
    if prompts is not None:
        prompts.save_to_disk(str(folder / "prompts"))
    args = {
        "job": job.to_json(),
        "preferences": str(folder / "preferences"),
        "prompts": str(folder / "prompts") if prompts is not None else None,
        "log": str(folder / "log"),
    }
    args_file = folder / "args.json"
    args_file.write_text(json.dumps(args, indent=2))
    config = accelerate_config_path(job.cfg.accelerate_config)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "-m",
        "rlaif.training.launch",
        str(args_file),
    ]
    log.info("train: %s", " ".join(command))
    returncode, tail = _run(command, folder / "output.log")
    if returncode != 0:
        raise RlaifError(
            f"train: accelerate launch with {config} failed (exit code {returncode}); the "
            f"last lines of its output (all of it in {folder / 'output.log'}):\n" + "".join(tail)
        )
    return load_from_disk(args["log"], keep_in_memory=True)


def _run(command: list[str], log_file: Path) -> tuple[int, list[str]]:
    """Run ``command``, echoing its output to stderr and ``log_file``; keep its last lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with (
        log_file.open("w") as sink,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as child,
    ):
        assert child.stdout is not None
        for line in child.stdout:
            sys.stderr.write(line)
            sink.write(line)
            tail.append(line)
    return child.returncode, list(tail)


def main(argv: list[str] | None = None) -> None:
    """The entrypoint each launched process runs: the job ``args.json`` describes."""
    from accelerate import PartialState

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    history = run_job(
        TrainJob.from_json(args["job"]),
        load_from_disk(args["preferences"]),
        load_from_disk(args["prompts"]) if args["prompts"] else None,
    )
    state = PartialState()
    if state.is_main_process:
        history.save_to_disk(args["log"])
    # every process leaves together: one that exits while the main one still writes (the
    # model, the monitor's kept policy) takes the process group down under it
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main()
