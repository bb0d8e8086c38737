"""Label-free performance estimation (CBPE, as NannyML publishes it) from a classifier's probabilities.

Fitted once on a labelled reference (a blind set the model was evaluated on), by isotonic regression:
- a map from the predicted label's probability (confidence) to correctness, for accuracy;
- one map per class from its probability to "this is the true class" (one-vs-rest), for the expected
  confusion matrix: calibrated class probabilities, normalised per row (uniform where all map to 0).
On unlabelled traffic, estimated accuracy is the mean calibrated confidence, and estimated macro F1 is
the macro F1 of the expected confusion matrix (NannyML's per-class TP, FP, FN sums). The interval treats
each prediction as a Bernoulli (for F1, categorical) variable with its calibrated probability: it is the
spread of the realised score the model would get if the calibration holds.

The estimate is right only when the relation between probability and correctness is the reference's
(no concept shift): covariate shift is fine, label shift within a class is not.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.cancel import checkpoint

# Cells (draws x rows x classes) simulated at once while drawing intervals.
SIM_CELLS = 4_000_000
N_DRAWS = 1000


@dataclass(frozen=True)
class IsotonicMap:
    """A non-decreasing piecewise-linear map through (x, y), clipped outside [x[0], x[-1]]."""

    x: list[float]
    y: list[float]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.interp(values, self.x, self.y)


def _pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``values`` (one per distinct x, in x order)."""
    means: list[float] = []
    totals: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        totals.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            weight_sum = totals[-2] + totals[-1]
            merged = (means[-2] * totals[-2] + means[-1] * totals[-1]) / weight_sum
            size = sizes[-2] + sizes[-1]
            del means[-1], totals[-1], sizes[-1]
            means[-1], totals[-1], sizes[-1] = merged, weight_sum, size
    return np.repeat(np.asarray(means), sizes)


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> IsotonicMap:
    """Isotonic regression of y on x, as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` fits it:
    tied x averaged, pooled adjacent violators, then only the points where the fit changes slope kept."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    unique_x, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y, minlength=len(unique_x)) / counts
    fitted = _pool_adjacent_violators(means, counts.astype(np.float64))
    keep = np.ones(len(fitted), dtype=bool)
    if len(fitted) > 2:
        keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return IsotonicMap(unique_x[keep].tolist(), fitted[keep].tolist())


@dataclass(frozen=True)
class PerformanceEstimator:
    """What is kept of the reference: the fitted maps only, never a label."""

    labels: list[str]
    accuracy: IsotonicMap
    classes: list[IsotonicMap]
    reference_rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "accuracy": {"x": self.accuracy.x, "y": self.accuracy.y},
            "classes": [{"x": m.x, "y": m.y} for m in self.classes],
            "reference_rows": self.reference_rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PerformanceEstimator":
        return cls(
            list(data["labels"]),
            IsotonicMap(data["accuracy"]["x"], data["accuracy"]["y"]),
            [IsotonicMap(m["x"], m["y"]) for m in data["classes"]],
            int(data["reference_rows"]),
        )


def fit_estimator(labels: list[str], probabilities: np.ndarray, truth: np.ndarray) -> PerformanceEstimator:
    """Fit on a labelled reference: (n, K) probabilities in ``labels`` order, truth as column indices."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rows = np.arange(len(truth))
    predicted = probabilities.argmax(axis=1)
    accuracy = fit_isotonic(probabilities[rows, predicted], (predicted == truth).astype(np.float64))
    classes = []
    for k in range(probabilities.shape[1]):
        checkpoint()
        classes.append(fit_isotonic(probabilities[:, k], (truth == k).astype(np.float64)))
    return PerformanceEstimator(list(labels), accuracy, classes, len(truth))


@dataclass(frozen=True)
class EstimatedValue:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PerformanceEstimate:
    accuracy: EstimatedValue
    f1: EstimatedValue
    rows: int


def calibrated_confidence(estimator: PerformanceEstimator, probabilities: np.ndarray) -> np.ndarray:
    """Each prediction's calibrated probability of being correct."""
    return np.clip(estimator.accuracy(probabilities.max(axis=1)), 0.0, 1.0)


def calibrated_probabilities(estimator: PerformanceEstimator, probabilities: np.ndarray) -> np.ndarray:
    """Per-class calibrated probabilities, each row normalised to 1 (uniform where every class maps to 0)."""
    calibrated = np.column_stack([m(probabilities[:, k]) for k, m in enumerate(estimator.classes)])
    total = calibrated.sum(axis=1, keepdims=True)
    uniform = np.full_like(calibrated, 1.0 / calibrated.shape[1])
    return np.divide(calibrated, total, out=uniform, where=total != 0)


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 over every class of (..., K, K) confusion matrices (rows true, columns predicted); 0 where undefined."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(denominator.shape), where=denominator != 0)
    return f1.mean(axis=-1)


def expected_confusion(calibrated: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """E[count(true k, predicted j)] = sum of calibrated p_k over the rows predicted j."""
    onehot = np.zeros_like(calibrated)
    onehot[np.arange(len(predicted)), predicted] = 1.0
    return calibrated.T @ onehot


def _accuracy_draws(confidence: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    m = len(confidence)
    rows = max(1, SIM_CELLS // max(1, m))
    out = []
    for start in range(0, n_draws, rows):
        checkpoint()
        size = min(rows, n_draws - start)
        out.append((rng.random((size, m)) < confidence).mean(axis=1))
    return np.concatenate(out)


def _f1_draws(calibrated: np.ndarray, predicted: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    m, k = calibrated.shape
    cumulative = np.cumsum(calibrated, axis=1)
    rows = max(1, SIM_CELLS // max(1, m * k))
    out = []
    for start in range(0, n_draws, rows):
        checkpoint()
        size = min(rows, n_draws - start)
        draws = rng.random((size, m, 1))
        truth = np.minimum((draws > cumulative[None]).sum(axis=2), k - 1)
        cells = truth * k + predicted[None] + (np.arange(size) * k * k)[:, None]
        confusion = np.bincount(cells.ravel(), minlength=size * k * k).reshape(size, k, k)
        out.append(macro_f1(confusion))
    return np.concatenate(out)


def _interval(value: float, draws: np.ndarray, level: float) -> EstimatedValue:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return EstimatedValue(float(value), float(low), float(high))


def estimate_performance(
    estimator: PerformanceEstimator,
    probabilities: np.ndarray,
    *,
    confidence_level: float = 0.95,
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> PerformanceEstimate:
    """Estimated accuracy and macro F1 of (m, K) unlabelled probabilities, with seeded Bernoulli intervals.

    Rows are put in a canonical order first, so the intervals depend on the rows, not on how they were read.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(estimator.classes) or len(probabilities) == 0:
        raise ValueError(f"expected a non-empty (m, {len(estimator.classes)}) probability matrix")
    probabilities = probabilities[np.lexsort(probabilities.T[::-1])]
    rng = np.random.default_rng(seed)
    predicted = probabilities.argmax(axis=1)
    confidence = calibrated_confidence(estimator, probabilities)
    calibrated = calibrated_probabilities(estimator, probabilities)
    accuracy = float(confidence.mean())
    f1 = float(macro_f1(expected_confusion(calibrated, predicted)))
    return PerformanceEstimate(
        _interval(accuracy, _accuracy_draws(confidence, n_draws, rng), confidence_level),
        _interval(f1, _f1_draws(calibrated, predicted, n_draws, rng), confidence_level),
        len(probabilities),
    )
