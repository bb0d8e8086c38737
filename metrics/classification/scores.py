"""Count -> score formulas (sklearn's precision, recall, F1 and accuracy), vectorised over leading axes.

A bootstrap resample is a batch row of counts, so one call scores every resample at once.
"""

from collections.abc import Sequence

import numpy as np

from metrics.errors import MetricInputError

Scores = dict[str, np.ndarray]


def zero_division_value(zero_division: float | str) -> float:
    """sklearn's accepted values: 0, 1, NaN ("nan"), and "warn" (which scores as 0)."""
    if zero_division in ("nan", "warn"):
        return float("nan") if zero_division == "nan" else 0.0
    numeric = isinstance(zero_division, int | float) and not isinstance(zero_division, bool)
    if numeric and (zero_division in (0, 1) or np.isnan(zero_division)):
        return float(zero_division)
    raise MetricInputError(f"zero_division must be 0, 1, 'nan' or 'warn', got {zero_division!r}", "zero_division")


def divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    """Elementwise ratio, ``zero_division`` where the denominator is 0: no warning, no inf."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.full(numerator.shape, zero_division, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator != 0, dtype=np.float64)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN when nothing is left (sklearn's _nanaverage)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1)
    return divide(np.where(valid, values, 0.0).sum(axis=-1), count, float("nan"))


def _weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the last axis ignoring NaN; falls back to the plain mean when weights sum to 0."""
    valid = ~np.isnan(values)
    w = np.where(valid, weights, 0).astype(np.float64)
    total = w.sum(axis=-1)
    weighted = divide((np.where(valid, values, 0.0) * w).sum(axis=-1), total, float("nan"))
    return np.where(total == 0, _nanmean(values), weighted)


def prf_from_counts(
    tp: np.ndarray,
    pred_sum: np.ndarray,
    true_sum: np.ndarray,
    average: str | None,
    zero_division: float | str = 0.0,
) -> Scores:
    """Precision, recall and F1 from per-label counts of shape [..., L] (the scored labels only).

    ``average=None`` keeps the label axis; "binary" expects L == 1 (the positive label) and, like
    "macro", averages over it. "samples" is not a count formula: see ``scores_from_patterns``.
    """
    zd = zero_division_value(zero_division)
    if average == "micro":
        tp, pred_sum, true_sum = (np.sum(a, axis=-1, keepdims=True) for a in (tp, pred_sum, true_sum))
    scores = {
        "precision": divide(tp, pred_sum, zd),
        "recall": divide(tp, true_sum, zd),
        "f1": divide(2.0 * np.asarray(tp, np.float64), np.add(true_sum, pred_sum, dtype=np.float64), zd),
    }
    if average is None:
        return scores
    if average == "weighted":
        return {k: _weighted_nanmean(v, np.asarray(true_sum)) for k, v in scores.items()}
    return {k: _nanmean(v) for k, v in scores.items()}


def scores_from_confusion(
    confusion: np.ndarray,
    average: str | None = "macro",
    *,
    label_indices: Sequence[int] | np.ndarray | None = None,
    pos_index: int | None = None,
    zero_division: float | str = 0.0,
) -> Scores:
    """Accuracy, precision, recall, f1 from confusion matrices [..., K, K] (rows reference, cols prediction).

    The matrix must hold every example (accuracy is its trace share). ``label_indices`` picks the
    scored labels (sklearn's ``labels``); for ``average="binary"`` pass ``pos_index`` instead.
    """
    confusion = np.asarray(confusion)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    pred_sum = confusion.sum(axis=-2)
    true_sum = confusion.sum(axis=-1)
    if average == "binary":
        if pos_index is None:
            raise ValueError("average='binary' needs pos_index")
        label_indices = [pos_index]
    elif average == "samples":
        raise MetricInputError("average='samples' needs multilabel data", "average")
    if label_indices is not None:
        index = np.asarray(label_indices, dtype=np.intp)
        tp, pred_sum, true_sum = tp[..., index], pred_sum[..., index], true_sum[..., index]
    scores = prf_from_counts(tp, pred_sum, true_sum, average, zero_division)
    total = confusion.sum(axis=(-2, -1))
    scores["accuracy"] = divide(np.trace(confusion, axis1=-2, axis2=-1), total, float("nan"))
    return scores


def scores_from_patterns(
    true_patterns: np.ndarray,
    pred_patterns: np.ndarray,
    counts: np.ndarray,
    average: str | None = "macro",
    *,
    label_indices: Sequence[int] | np.ndarray | None = None,
    zero_division: float | str = 0.0,
) -> Scores:
    """Multilabel scores from P distinct (reference, prediction) indicator patterns [P, L], counts [..., P].

    ``counts`` may carry leading batch axes (bootstrap resamples). Accuracy is subset accuracy over
    all labels; the other scores use the labels in ``label_indices`` (default: all).
    """
    counts = np.asarray(counts, dtype=np.float64)
    exact = np.all(true_patterns == pred_patterns, axis=1)
    if label_indices is not None:
        index = np.asarray(label_indices, dtype=np.intp)
        true_patterns, pred_patterns = true_patterns[:, index], pred_patterns[:, index]
    hits = true_patterns & pred_patterns
    if average == "samples":
        per_example = prf_from_counts(hits.sum(1), pred_patterns.sum(1), true_patterns.sum(1), None, zero_division)
        scores = {k: _count_weighted_nanmean(v, counts) for k, v in per_example.items()}
    else:
        tp, pred_sum, true_sum = (counts @ m.astype(np.float64) for m in (hits, pred_patterns, true_patterns))
        scores = prf_from_counts(tp, pred_sum, true_sum, average, zero_division)
    scores["accuracy"] = divide(counts @ exact.astype(np.float64), counts.sum(axis=-1), float("nan"))
    return scores


def _count_weighted_nanmean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over examples of a per-pattern value (NaN patterns skipped), examples given as pattern counts."""
    valid = ~np.isnan(values)
    return divide(counts @ np.where(valid, values, 0.0), counts @ valid.astype(np.float64), float("nan"))
