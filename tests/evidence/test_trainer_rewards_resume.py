"""A user's TRL GRPO script rewarded through ``rlaif.rewards.TrlReward``, killed (``kill -9``)
after its second checkpoint and resumed from it: no (prompt, answer, label) is paid for twice,
whatever was judged before the kill is read from the store."""

import json
import os
import signal
import time

from configs_for_tests import write
from trl_script import reward_pipeline, run_script


def test_killed_and_resumed_pays_for_no_answer_twice(tmp_path, tiny_model):
    pipeline = write(tmp_path, reward_pipeline(tmp_path, reference_column="answer"))
    proc = run_script(tmp_path, tiny_model, pipeline, "text", steps=4, background=True)
    log = tmp_path / "calls.jsonl"
    # the checkpoint whole: transformers writes its state file last, and a checkpoint killed
    # before that cannot be resumed from by anyone
    saved = tmp_path / "trl" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not saved.exists():
        time.sleep(0.2)
    assert saved.exists(), "no checkpoint before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [tuple(json.loads(x)) for x in log.read_text().splitlines()]
    run_script(tmp_path, tiny_model, pipeline, "text", steps=4, resume=True)
    after = [tuple(json.loads(x)) for x in log.read_text().splitlines()]
    paid = [c for c in after if c[0].startswith("Compute")]
    twice = len(paid) - len(set(paid))
    # a python judge answers one call at a time, each stored as it returns: at most the one
    # in flight at the kill is asked again
    assert twice <= 1, twice
    assert len(after) > len(before)  # the resumed steps judged their own completions
