"""A single-label classifier's probabilities on a blind set, against its hidden labels: calibration, and
the performance estimator (CBPE's fitted maps) that drift checks apply to unlabelled traffic.

Columns follow the model's labels (recorded in the job's options); a set label is matched to a model
label by its text, as predictions are. A set label the model does not have leaves both undefined.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics.calibration import Calibration, calibration_report
from metrics.performance_estimation import PerformanceEstimator, fit_estimator
from service.test_sets.scoring import CONFIDENCE_LEVEL, SEED


def truth_columns(model_labels: Sequence[str], targets: Sequence[Any]) -> np.ndarray | None:
    """Each target's column among the model's labels; None when some target is not a model label."""
    index = {label: j for j, label in enumerate(model_labels)}
    columns = [index.get(str(target)) for target in targets]
    if any(column is None for column in columns):
        return None
    return np.asarray(columns, dtype=np.intp)


def calibration_and_estimator(
    model_labels: Sequence[str], probabilities: Sequence[Sequence[float]], targets: Sequence[Any], n_resamples: int
) -> tuple[Calibration, PerformanceEstimator] | None:
    """ECE, Brier, log loss and bins of the model's probabilities, with intervals, and the CBPE maps fitted on
    them; None if the set's labels are not the model's."""
    truth = truth_columns(model_labels, targets)
    matrix = np.asarray(probabilities, dtype=np.float64)
    if truth is None or matrix.ndim != 2 or matrix.shape[1] != len(model_labels):
        return None
    calibration = calibration_report(
        matrix,
        truth,
        matrix.argmax(axis=1),
        confidence_level=CONFIDENCE_LEVEL,
        n_resamples=n_resamples,
        seed=SEED,
    )
    return calibration, fit_estimator(list(model_labels), matrix, truth)
