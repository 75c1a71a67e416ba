"""How far to trust a judge's probabilities, measured against people.

``rlaif judge-eval LABELS --calibrate`` fits, per judge, a map from its P(first wins) to the
frequency with which people agreed, on one part of the labelled pairs, and reports expected
calibration error and log-loss on the other part before and after. The fitted map goes to a
small JSON file that the judge's config names (``calibration: FILE``); aggregation then reads
calibrated probabilities, and ``aggregate.judge_weights: agreement`` weighs each judge of a
panel by the agreement with people measured on the held-out part.

Two maps: ``temperature`` (one scale on the logit; keeps the order of the judge's answers,
safe on little data) and ``isotonic`` (any monotone map on P(first), which also takes out a
constant position bias; needs more pairs and scikit-learn).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from rlaif.errors import ConfigError

METHODS = ("temperature", "isotonic")
_EPS = 1e-6


@dataclass(frozen=True)
class Calibration:
    judge: str
    method: Literal["temperature", "isotonic"]
    temperature: float | None = None
    x: tuple[float, ...] = ()
    """Isotonic: knots on the judge's P(first)."""
    y: tuple[float, ...] = ()
    """Isotonic: calibrated P(first) at each knot (linear in between, flat outside)."""
    agreement: float | None = None
    """Share of held-out pairs where the judge (both orders, calibrated) sided with people."""
    n_fit: int = 0

    def first(self, p_first: np.ndarray) -> np.ndarray:
        """Calibrated P(first wins)."""
        p = np.clip(np.asarray(p_first, dtype=float), _EPS, 1 - _EPS)
        if self.method == "temperature":
            return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / self.temperature))
        return np.interp(p, self.x, self.y)

    def weight(self) -> float:
        """A panel weight: the log-odds of the judge's agreement with people (the optimal
        weight of a vote that is right with that probability), none at chance or below."""
        if self.agreement is None:
            return 1.0
        acc = min(max(self.agreement, _EPS), 1 - _EPS)
        return max(math.log(acc / (1 - acc)), 0.0)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def load_calibration(path: str | Path) -> Calibration:
    """A calibration file, with an error naming the file and the field at fault."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the calibration file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("method") not in METHODS:
        raise ConfigError(f"{path}: 'method' must be one of {', '.join(METHODS)}")
    try:
        cal = Calibration(
            judge=str(data["judge"]),
            method=data["method"],
            temperature=data.get("temperature"),
            x=tuple(float(v) for v in data.get("x", ())),
            y=tuple(float(v) for v in data.get("y", ())),
            agreement=data.get("agreement"),
            n_fit=int(data.get("n_fit", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed calibration ({exc!r})") from None
    if cal.method == "temperature" and not (
        isinstance(cal.temperature, int | float) and cal.temperature > 0
    ):
        raise ConfigError(f"{path}: 'temperature' must be a positive number")
    if cal.method == "isotonic" and (len(cal.x) < 2 or len(cal.x) != len(cal.y)):
        raise ConfigError(f"{path}: isotonic 'x' and 'y' must be equal-length lists of 2 or more")
    return cal


def fit(
    judge: str, p_first: np.ndarray, first_won: np.ndarray, method: str = "temperature"
) -> Calibration:
    """Fit the map from the judge's P(first) to how often the first answer was the one
    people preferred."""
    p = np.clip(np.asarray(p_first, dtype=float), _EPS, 1 - _EPS)
    y = np.asarray(first_won, dtype=float)
    if len(p) < 2:
        raise ConfigError(f"judge '{judge}': calibration needs at least 2 judged pairs")
    if method == "temperature":
        return Calibration(judge, "temperature", temperature=_fit_temperature(p, y), n_fit=len(p))
    if method != "isotonic":
        raise ConfigError(f"calibration method '{method}' is not one of {', '.join(METHODS)}")
    try:
        from sklearn.isotonic import IsotonicRegression
    except ImportError:
        raise ConfigError(
            "isotonic calibration needs scikit-learn: pip install scikit-learn"
        ) from None
    iso = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip").fit(p, y)
    return Calibration(
        judge,
        "isotonic",
        x=tuple(map(float, iso.X_thresholds_)),
        y=tuple(map(float, iso.y_thresholds_)),
        n_fit=len(p),
    )


def _fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """The temperature with the least log-loss: golden-section search on log T (log-loss is
    convex in 1/T, so the search finds the one minimum)."""
    z = np.log(p / (1 - p))

    def loss(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / math.exp(log_t))), _EPS, 1 - _EPS)
        return log_loss(q, y)

    lo, hi = math.log(0.05), math.log(50.0)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    y = np.asarray(y, dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Mean gap between stated probability and observed frequency, over equal-width bins
    weighted by how many answers fall in each."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    gaps = [
        abs(p[which == b].mean() - y[which == b].mean()) * (which == b).sum()
        for b in range(bins)
        if (which == b).any()
    ]
    return float(sum(gaps) / len(p)) if len(p) else float("nan")


def calibration_hashes(judges) -> dict[str, str]:
    """Judge name -> content hash of its calibration file (what aggregate's fingerprint
    covers: a refit file makes the preferences be aggregated again)."""
    return {
        j.name: hashlib.sha256(Path(j.calibration).read_bytes()).hexdigest()
        for j in judges.judges
        if j.calibration is not None and Path(j.calibration).is_file()
    }


def panel_calibrations(judges, weights: str) -> dict[str, Calibration]:
    """Each judge's calibration, checked before anything runs: files that read, and with
    ``aggregate.judge_weights: agreement`` a measured agreement for every judge and a panel
    that is not all at chance."""
    cals = {j.name: load_calibration(j.calibration) for j in judges.judges if j.calibration}
    if weights == "agreement":
        missing = [
            j.name for j in judges.judges if j.name not in cals or cals[j.name].agreement is None
        ]
        if missing:
            raise ConfigError(
                f"aggregate.judge_weights: agreement needs a calibration file with a measured "
                f"agreement for every judge; missing for: {', '.join(missing)} (rlaif "
                "judge-eval LABELS --pipeline P.yaml --calibrate writes them)"
            )
        if not any(c.weight() > 0 for c in cals.values()):
            raise ConfigError(
                "aggregate.judge_weights: agreement: every judge agrees with people at chance "
                "or worse, so every weight is 0"
            )
    return cals
