"""Progress bars that also tell the run's manifest how far the current stage is.

Stages use this ``tqdm`` instead of tqdm's own; the pipeline registers a reporter, and
``rlaif status`` (from any other shell) reads the progress the reporter writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm.auto import tqdm as _tqdm

Reporter = Callable[[dict], None]
_reporters: list[Reporter] = []
REPORT_EVERY_S = 2.0


class tqdm(_tqdm):  # noqa: N801 - a drop-in for tqdm
    def display(self, *args, **kwargs):
        shown = super().display(*args, **kwargs)
        self._report()
        return shown

    def close(self):
        if not self.disable:
            self._report(force=True)
        super().close()

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not _reporters or (not force and now - getattr(self, "_reported", 0) < REPORT_EVERY_S):
            return
        self._reported = now
        info = self.format_dict
        entry = {
            "task": info.get("prefix") or "",
            "done": info["n"],
            "total": info["total"],
            "unit": info["unit"],
            "rate": info.get("rate"),
            "detail": info.get("postfix") or "",
        }
        for report in _reporters:
            report(entry)


def add_reporter(report: Reporter) -> None:
    _reporters.append(report)


def remove_reporter(report: Reporter) -> None:
    _reporters.remove(report)
