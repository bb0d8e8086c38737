"""Calibration of predicted probabilities: expected calibration error, Brier score, log loss, reliability bins.

ECE uses equal-width bins of the predicted label's probability (its confidence); bin b is
(edges[b], edges[b + 1]] and a confidence of 0 falls in the first. Since every example lands in one bin,
ECE = sum_b (n_b / n) |accuracy_b - confidence_b| = sum_b |correct_b - confidence_b| / n, a function of
per-bin sums. Brier and log loss are means of per-example terms. So all three are column sums of one
per-example matrix, and ``bootstrap.resampled_sums`` gives their intervals without resampling examples.
Brier and log loss follow scikit-learn's ``brier_score_loss`` and ``log_loss`` on the full matrix.
"""

from dataclasses import dataclass, field

import numpy as np

from metrics.bootstrap import Interval, make_rng, percentile_interval, resampled_sums

N_BINS = 15
CALIBRATION_NAMES = ("ece", "brier", "log_loss")


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    confidence: float | None
    """Mean confidence in the bin; None when it is empty."""
    accuracy: float | None


@dataclass(frozen=True)
class Calibration:
    ece: float
    brier: float
    log_loss: float
    bins: list[CalibrationBin]
    confidence_intervals: dict[str, Interval] = field(default_factory=dict)


def bin_edges(n_bins: int = N_BINS) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence: b with edges[b] < c <= edges[b + 1]; 0 goes to the first bin."""
    edges = bin_edges(n_bins)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def _log_loss_terms(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """-log p(true label), with p clipped to [eps, 1 - eps] as scikit-learn clips it."""
    eps = np.finfo(probabilities.dtype).eps
    return -np.log(np.clip(probabilities[np.arange(len(truth)), truth], eps, 1 - eps))


def _brier_terms(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Squared distance to the one-hot truth; halved for two columns, where it is (p_positive - y)^2."""
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(truth)), truth] = 1.0
    terms = ((probabilities - onehot) ** 2).sum(axis=1)
    return terms / 2 if probabilities.shape[1] == 2 else terms


def example_statistics(
    probabilities: np.ndarray, truth: np.ndarray, predicted: np.ndarray, n_bins: int = N_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Per example: (correct - confidence) in its bin's column, then its Brier and log-loss terms; and its bin.

    ``probabilities`` is (n, K) with rows summing to 1; ``truth`` and ``predicted`` are column indices.
    """
    rows = np.arange(len(truth))
    confidence = probabilities[rows, predicted]
    bins = bin_index(confidence, n_bins)
    stats = np.zeros((len(truth), n_bins + 2))
    stats[rows, bins] = (predicted == truth).astype(np.float64) - confidence
    stats[:, n_bins] = _brier_terms(probabilities, truth)
    stats[:, n_bins + 1] = _log_loss_terms(probabilities, truth)
    return stats, bins


def scores_from_sums(sums: np.ndarray, n_examples: int, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """ECE, Brier and log loss from (..., n_bins + 2) column sums over ``n_examples`` examples."""
    return {
        "ece": np.abs(sums[..., :n_bins]).sum(axis=-1) / n_examples,
        "brier": sums[..., n_bins] / n_examples,
        "log_loss": sums[..., n_bins + 1] / n_examples,
    }


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: np.ndarray, n_bins: int = N_BINS
) -> list[CalibrationBin]:
    edges = bin_edges(n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    return [
        CalibrationBin(
            float(edges[b]),
            float(edges[b + 1]),
            int(counts[b]),
            float(confidence_sums[b] / counts[b]) if counts[b] else None,
            float(correct_sums[b] / counts[b]) if counts[b] else None,
        )
        for b in range(n_bins)
    ]


def calibration_report(
    probabilities: np.ndarray,
    truth: np.ndarray,
    predicted: np.ndarray,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = 0,
    seed: int | None = 0,
    n_bins: int = N_BINS,
) -> Calibration:
    """ECE, Brier, log loss and reliability bins, with percentile bootstrap intervals when ``n_resamples > 0``.

    Inputs are already validated: a (n, K) probability matrix and column indices of truth and prediction.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(truth)
    stats, bins = example_statistics(probabilities, truth, predicted, n_bins)
    point = scores_from_sums(stats.sum(axis=0), n, n_bins)
    intervals: dict[str, Interval] = {}
    if n_resamples > 0:
        draws = scores_from_sums(resampled_sums(stats, n_resamples, make_rng(seed)), n, n_bins)
        intervals = {name: percentile_interval(draws[name], confidence_level) for name in CALIBRATION_NAMES}
    rows = np.arange(n)
    return Calibration(
        ece=float(point["ece"]),
        brier=float(point["brier"]),
        log_loss=float(point["log_loss"]),
        bins=reliability_bins(probabilities[rows, predicted], predicted == truth, bins, n_bins),
        confidence_intervals=intervals,
    )
