"""The generalization gap: a model's score on a sample of its training data minus its score on a blind set.

The two samples are independent, so the interval is an unpaired bootstrap: each side is resampled on its
own (independent seeds) and the gap of every pair of resamples is taken, then its percentile interval.
A gap whose lower bound stays above a margin says the model does better on what it trained on than on
unseen data by more than chance: overfitting.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from metrics.bootstrap import percentile_interval


@dataclass(frozen=True)
class Gap:
    value: float
    low: float
    high: float
    level: float


def unpaired_gap(
    train: Mapping[str, float],
    train_draws: Mapping[str, np.ndarray],
    test: Mapping[str, float],
    test_draws: Mapping[str, np.ndarray],
    level: float,
) -> dict[str, Gap]:
    """train - test per metric, with the percentile interval of train resample - test resample."""
    gaps = {}
    for name in train:
        interval = percentile_interval(np.asarray(train_draws[name]) - np.asarray(test_draws[name]), level)
        gaps[name] = Gap(train[name] - test[name], interval.low, interval.high, level)
    return gaps


def overfits(gap: Gap, margin: float, scale: float = 1.0, lower_is_better: bool = False) -> bool:
    """The gap in the better direction, on a 0-1 scale, exceeds ``margin`` even at its interval's near end."""
    bound = -gap.high if lower_is_better else gap.low
    return bool(np.isfinite(bound) and bound / scale > margin)
