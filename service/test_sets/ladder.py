"""The Ladder of Blum & Hardt (2015), "The Ladder: A Reliable Leaderboard for Machine Learning Competitions".

A key's reported score moves only when a submission beats that key's best by a statistically
meaningful margin, and what is reported is rounded. Adaptive tuning against the holdout then learns
almost nothing per submission: small random improvements never register, so an attacker who keeps
whatever raises the reported score cannot climb. The margin is a paired test (as the parameter-free
Ladder's paired t-test, here the paired bootstrap) against the best submission; everything reported,
intervals included, belongs to the best submission, so no value leaks from a rejected one.

Like Blum & Hardt's, this Ladder releases one loss: the ladder metric and its interval. The other
metrics of the best submission are kept but not released to evaluators; they move with single
predictions (macro precision jumps by about 1/K when one probe lands in a rare class) and would
hand out a blind label per fresh key. Admins, who upload the labels, see the full rounded report.
"""

import math
from dataclasses import dataclass
from typing import Any

from metrics.bootstrap import Interval
from service.test_sets.config import LOWER_IS_BETTER, SCALE, SetConfig


@dataclass(frozen=True)
class Decision:
    improved: bool
    p_value: float | None


def better(metric: str, candidate: float, best: float) -> bool:
    if math.isnan(candidate):
        return False
    if math.isnan(best):
        return True
    return candidate < best if metric in LOWER_IS_BETTER else candidate > best


def decide(metric: str, candidate: float, best: float, p_value: float, alpha: float) -> Decision:
    """A new best needs a better score and a paired-test p-value below ``alpha``."""
    return Decision(better(metric, candidate, best) and p_value < alpha, p_value)


def round_score(metric: str, value: float | None, step: float) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    quantum = step * SCALE.get(metric, 1.0)
    return round(round(value / quantum) * quantum, 10)


def rounded(metrics: dict[str, float], intervals: dict[str, Interval], config: SetConfig) -> dict[str, Any]:
    """The JSON form of a report as the ladder releases it."""
    step = config.ladder_step
    return {
        "metrics": {name: round_score(name, value, step) for name, value in metrics.items()},
        "intervals": {
            name: {
                "low": round_score(name, interval.low, step),
                "high": round_score(name, interval.high, step),
                "level": interval.level,
            }
            for name, interval in intervals.items()
        },
    }


def released(report: dict[str, Any], metric: str) -> dict[str, Any]:
    """The part of a stored (rounded) best report an evaluator key may see: the ladder metric alone."""
    intervals = report.get("intervals", {})
    return {
        "metrics": {metric: report.get("metrics", {}).get(metric)},
        "intervals": {metric: intervals[metric]} if metric in intervals else {},
    }
