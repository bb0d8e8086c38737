"""Counting: single-label confusion cells or multilabel patterns, behind one scoring interface.

Every score is a function of a few counts: a K x K confusion matrix for single-label data, or for
multilabel data the counts of each distinct (reference set, prediction set) pattern. A bootstrap is
one multinomial draw over those cells followed by the same formula: exactly equivalent to resampling
examples, and cheap.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.classification.scores import Scores, scores_from_confusion, scores_from_patterns
from metrics.errors import MetricInputError

# Label lists longer than this are cut in messages.
WARN_LIST_MAX = 20


@dataclass(frozen=True)
class ConfusionMatrix:
    """Rows are references, columns predictions, both in ``labels`` order (as sklearn)."""

    labels: list[Any]
    matrix: list[list[int]]


def show_labels(labels: Sequence[Any]) -> str:
    """A label list for a message, cut after WARN_LIST_MAX labels."""
    shown = ", ".join(repr(label) for label in labels[:WARN_LIST_MAX])
    more = f", ... ({len(labels) - WARN_LIST_MAX} more)" if len(labels) > WARN_LIST_MAX else ""
    return f"[{shown}{more}]"


@dataclass(frozen=True)
class Counted:
    """Everything the report needs, independent of single-label vs multilabel.

    ``cells`` are the counts a bootstrap resamples; ``score(cells[b, C], average)`` maps them to scores.
    """

    universe: list[Any]
    n_report: int
    cells: np.ndarray
    score: Callable[[np.ndarray, str | None], Scores]
    scored: np.ndarray  # universe indices the averaged scores use
    true_sum: np.ndarray  # per universe label
    pred_sum: np.ndarray
    confusion: ConfusionMatrix | dict[str, list[list[int]]]
    baseline_label: Any
    baseline_share: float
    baseline_scores: Scores


def _binary_positive(universe: list[Any], confusion: np.ndarray, pos_label: Any) -> tuple[list[Any], int, np.ndarray]:
    """sklearn's rules: at most two labels present; pos_label must be one of them when two are.

    With a single present label an absent pos_label is allowed and scores as zero_division.
    """
    if not isinstance(pos_label, int | str | np.integer):
        raise MetricInputError(f"pos_label must be an int, str or bool, got {pos_label!r}", "pos_label")
    used = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    present = [label for label, u in zip(universe, used, strict=True) if u]
    if len(present) > 2:
        raise MetricInputError(
            f"average='binary' needs at most two labels but {len(present)} occur ({show_labels(present)}); "
            "use 'micro', 'macro' or 'weighted'",
            "average",
        )
    if pos_label not in present and len(present) == 2:
        raise MetricInputError(
            f"pos_label={pos_label!r} is not a valid label; it should be one of {present}", "pos_label"
        )
    if pos_label in universe:
        return universe, universe.index(pos_label), confusion
    return [*universe, pos_label], len(universe), np.pad(confusion, ((0, 1), (0, 1)))


def count_single(
    universe: list[Any],
    n_report: int,
    pred: np.ndarray,
    true: np.ndarray,
    average: str | None,
    pos_label: Any,
    zero_division: float,
) -> Counted:
    if average == "samples":
        raise MetricInputError("average='samples' is only defined for multilabel data", "average")
    k = len(universe)
    confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    pos_index = None
    if average == "binary":
        universe, pos_index, confusion = _binary_positive(universe, confusion, pos_label)
        k = len(universe)
    report_indices = np.arange(n_report)

    def score(cells: np.ndarray, avg: str | None) -> Scores:
        return scores_from_confusion(
            cells.reshape(-1, k, k),
            avg,
            label_indices=report_indices,
            pos_index=pos_index,
            zero_division=zero_division,
        )

    true_sum = confusion.sum(axis=1)
    majority = int(np.argmax(true_sum))
    baseline = np.zeros_like(confusion)
    baseline[:, majority] = true_sum
    return Counted(
        universe=universe,
        n_report=n_report,
        cells=confusion.ravel(),
        score=score,
        scored=report_indices if pos_index is None else np.array([pos_index]),
        true_sum=true_sum,
        pred_sum=confusion.sum(axis=0),
        confusion=ConfusionMatrix(universe[:n_report], confusion[:n_report, :n_report].tolist()),
        baseline_label=universe[majority],
        baseline_share=float(true_sum[majority] / true_sum.sum()),
        baseline_scores=score(baseline.ravel()[None], average),
    )


def unique_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct boolean rows (lexicographic order) with their counts.

    Rows are bit-packed; up to 64 bits they become one big-endian integer each, so a plain 1-D sort
    replaces np.unique's much slower row-wise sort, in the same order.
    """
    packed = np.packbits(matrix, axis=1)
    width = packed.shape[1]
    if width <= 8:
        padded = np.zeros((len(packed), 8), dtype=np.uint8)
        padded[:, :width] = packed
        keys, counts = np.unique(padded.view(">u8").ravel(), return_counts=True)
        rows = keys.astype(">u8").view(np.uint8).reshape(-1, 8)[:, :width]
    else:
        rows, counts = np.unique(packed, axis=0, return_counts=True)
    return np.unpackbits(rows, axis=1, count=matrix.shape[1]).astype(bool), counts


def count_multilabel(
    universe: list[Any],
    n_report: int,
    pred: np.ndarray,
    true: np.ndarray,
    average: str | None,
    zero_division: float,
) -> Counted:
    """``pred`` and ``true`` are (n, L) indicator matrices over the universe."""
    if average == "binary":
        raise MetricInputError("average='binary' is not defined for multilabel data", "average")
    n_labels = len(universe)
    patterns, counts = unique_rows(np.concatenate([true, pred], axis=1))
    true_patterns, pred_patterns = patterns[:, :n_labels], patterns[:, n_labels:]
    report_indices = np.arange(n_report)

    def score(cells: np.ndarray, avg: str | None) -> Scores:
        return scores_from_patterns(
            true_patterns,
            pred_patterns,
            cells,
            avg,
            label_indices=report_indices,
            zero_division=zero_division,
        )

    true_sum, pred_sum = true.sum(axis=0), pred.sum(axis=0)
    tp = (true & pred).sum(axis=0)
    tn = len(true) - true_sum - pred_sum + tp
    per_label = np.stack([tn, pred_sum - tp, true_sum - tp, tp], axis=1).reshape(-1, 2, 2).tolist()
    refs, ref_counts = unique_rows(true)
    # Ties go to the lexicographically largest indicator row: the set holding the earliest labels.
    majority = int(np.flatnonzero(ref_counts == ref_counts.max())[-1])
    baseline_scores = scores_from_patterns(
        refs,
        np.broadcast_to(refs[majority], refs.shape),
        ref_counts[None],
        average,
        label_indices=report_indices,
        zero_division=zero_division,
    )
    return Counted(
        universe=universe,
        n_report=n_report,
        cells=counts,
        score=score,
        scored=report_indices,
        true_sum=true_sum,
        pred_sum=pred_sum,
        confusion={str(universe[i]): per_label[i] for i in report_indices},
        baseline_label=[universe[i] for i in np.flatnonzero(refs[majority])],
        baseline_share=float(ref_counts[majority] / len(true)),
        baseline_scores=baseline_scores,
    )
