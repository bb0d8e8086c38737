"""Do the bootstrap intervals cover the population F1 about as often as they claim?

A population is a joint distribution of (reference, prediction) cells, so its F1 is known exactly
from the cell probabilities. Each simulation draws n examples from it, asks for a 95% interval, and
checks whether the population F1 falls inside. Seeds are fixed, so the test is deterministic.
"""

import numpy as np
import pytest

from metrics.classification import classification_report

SIMULATIONS = 1000
N_EXAMPLES = 500
N_RESAMPLES = 1000

# Three classes, imbalanced; rows are references, columns predictions.
MULTICLASS = np.array([0.5, 0.3, 0.2])[:, None] * np.array([[0.80, 0.15, 0.05], [0.20, 0.70, 0.10], [0.10, 0.20, 0.70]])
# Binary with a 20% positive class (label 1).
BINARY = np.array([[0.70, 0.10], [0.06, 0.14]])


def population_f1(joint: np.ndarray, average: str) -> float:
    per_class = 2 * np.diag(joint) / (joint.sum(axis=0) + joint.sum(axis=1))
    return float(per_class[1] if average == "binary" else per_class.mean())


def coverage(joint: np.ndarray, average: str) -> float:
    k = len(joint)
    truth = population_f1(joint, average)
    rng = np.random.default_rng(20240601)
    covered = 0
    for seed in range(SIMULATIONS):
        cells = np.repeat(np.arange(k * k), rng.multinomial(N_EXAMPLES, joint.ravel()))
        references, predictions = cells // k, cells % k
        report = classification_report(predictions, references, average=average, n_resamples=N_RESAMPLES, seed=seed)
        interval = report.confidence_intervals["f1"]
        covered += interval.low <= truth <= interval.high
    return covered / SIMULATIONS


@pytest.mark.parametrize(("joint", "average"), [(MULTICLASS, "macro"), (BINARY, "binary")])
def test_95_percent_interval_covers_population_f1(joint: np.ndarray, average: str) -> None:
    assert 0.93 <= coverage(joint, average) <= 0.97
