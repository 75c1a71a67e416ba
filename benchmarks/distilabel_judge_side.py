"""The distilabel side of ``judge_vs_distilabel.py``, run by distilabel's own interpreter.

distilabel pins versions that clash with rlaif's, so it lives in a separate virtual
environment and this script imports nothing from rlaif. It reads one JSON job on stdin
(rows with ``prompt``, ``response_a``, ``response_b``; the rubric's template and system
prompt; server, model and batch size), judges every row with a ``TextGeneration`` task over
``OpenAILLM`` asking for the first token's top log-probabilities, as the rlaif judge does,
and prints one JSON object last: seconds spent in ``pipeline.run`` and answers received.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time


def main() -> None:
    job = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DISTILABEL_CACHE_DIR"] = cache
        from distilabel.models.llms import OpenAILLM
        from distilabel.pipeline import Pipeline
        from distilabel.steps import LoadDataFromDicts
        from distilabel.steps.tasks import TextGeneration

        logging.disable(logging.WARNING)
        with Pipeline(name="judge-vs-distilabel") as pipeline:
            load = LoadDataFromDicts(data=job["rows"], batch_size=job["batch_size"])
            task = TextGeneration(
                llm=OpenAILLM(
                    model=job["model"],
                    base_url=job["base_url"],
                    api_key="none",
                    max_retries=6,
                    generation_kwargs={
                        "max_new_tokens": 1,
                        "temperature": 0.0,
                        "logprobs": True,
                        "top_logprobs": job["top_logprobs"],
                    },
                ),
                template=job["template"],
                columns=["prompt", "response_a", "response_b"],
                system_prompt=job["system"],
                input_batch_size=job["batch_size"],
            )
            load >> task
        start = time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        elapsed = time.perf_counter() - start
        rows = distiset["default"]["train"]
        answered = sum(g is not None for g in rows["generation"])
    print(json.dumps({"seconds": elapsed, "rows": len(rows), "answered": answered}))


if __name__ == "__main__":
    main()
