"""Accuracy and macro F1 of the served model on the labels that came back later.

The storage layer reduces a window of feedback to counts of (predicted, actual) pairs, so a window of
any size costs one grouped query. Those counts are a confusion matrix over the labels present, scored
by ``metrics.classification`` as scikit-learn's ``accuracy_score`` and ``f1_score(average="macro")``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from metrics.classification import label_codes, scores_from_confusion


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
    counts = np.fromiter(pairs.values(), dtype=np.int64, count=len(pairs))
    n = int(counts.sum())
    if n == 0:
        return None
    universe, codes = label_codes({"actual": [a for _, a in pairs], "predicted": [p for p, _ in pairs]})
    k = len(universe)
    confusion = np.bincount(codes["actual"] * k + codes["predicted"], weights=counts, minlength=k * k)
    scores = scores_from_confusion(confusion.reshape(k, k), "macro")
    return OnlineScores(n, float(scores["accuracy"]), float(scores["f1"]))
