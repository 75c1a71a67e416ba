"""A process that runs a user's Python reward check, one JSON line in, one JSON line out:
``python -m rlaif.rewards.check_worker module:function MEMORY_MB``.

It is a fresh interpreter started for the purpose (not a ``multiprocessing`` child: those
re-run the training script's top level when it has no ``if __name__ == "__main__"`` guard, as
a user's TRL script often has not). It caps its own memory before it imports the check; the
parent kills it when a check runs past its time (:class:`rlaif.rewards.checks.PythonCheck`).
"""

from __future__ import annotations

import importlib
import json
import math
import resource
import sys


def main() -> None:
    limit = int(sys.argv[2]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    module, _, name = sys.argv[1].partition(":")
    check = getattr(importlib.import_module(module), name)
    out = sys.stdout
    sys.stdout = sys.stderr  # what the check prints must not break the answers
    for line in sys.stdin:
        request = json.loads(line)
        try:
            value = check(request["prompt"], request["completion"], request["reference"])
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise TypeError(f"returned {value!r}, not a finite number")
            answer = {"value": float(value)}
        except MemoryError:
            answer = {"error": "ran out of memory"}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
