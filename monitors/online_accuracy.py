"""Accuracy and macro F1 of the served model on the labels that came back later.

The storage layer reduces a window of feedback to counts of (predicted, actual) pairs, so a window of
any size costs one grouped query; the scores follow from those counts exactly as scikit-learn's
``accuracy_score`` and ``f1_score(average="macro")`` compute them over the labels present.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class OnlineWindow:
    """The most recent ``size`` feedback items or, when ``span`` is set, those received within it."""

    size: int
    span: timedelta | None = None


@dataclass(frozen=True)
class OnlineScores:
    n: int
    accuracy: float
    f1: float


def online_scores(pairs: Mapping[tuple[str, str], int]) -> OnlineScores | None:
    """``pairs`` maps (predicted, actual) to a count; None when there is no feedback."""
    n = sum(pairs.values())
    if n == 0:
        return None
    labels = {label for pair in pairs for label in pair}
    correct = sum(count for (predicted, actual), count in pairs.items() if predicted == actual)
    f1s = []
    for label in labels:
        tp = pairs.get((label, label), 0)
        predicted = sum(count for (p, _), count in pairs.items() if p == label)
        actual = sum(count for (_, a), count in pairs.items() if a == label)
        f1s.append(2 * tp / (predicted + actual))
    return OnlineScores(n, correct / n, sum(f1s) / len(f1s))
