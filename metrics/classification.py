"""Classification metrics computed from counts, matching scikit-learn exactly.

Every score here is a function of a few counts: a K x K confusion matrix for single-label data, or for
multilabel data the counts of each distinct (reference set, prediction set) pattern. The count -> score
functions are vectorised over leading batch axes, so a bootstrap is one multinomial draw over those
cells followed by the same formula. That is exactly equivalent to resampling examples, and cheap.

Semantics follow scikit-learn >= 1.3 ``precision_recall_fscore_support``, ``accuracy_score``,
``confusion_matrix`` and ``multilabel_confusion_matrix``: label order, ``labels`` subsets and
supersets, ``pos_label`` rules for ``average="binary"``, ``zero_division`` (F is 0, not
``zero_division``, when only one of precision and recall is undefined) and NaN-skipping averages.
"""

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metrics.bootstrap import CHUNK_CELLS, Interval, cell_counts_resamples, make_rng, percentile_interval
from metrics.cancel import checkpoint
from metrics.errors import MetricInputError

AVERAGES: tuple[str | None, ...] = (None, "binary", "micro", "macro", "weighted", "samples")
# A majority class at or above this share of references makes accuracy a misleading headline.
IMBALANCE_SHARE = 0.8
# Label lists longer than this are cut in warning messages.
WARN_LIST_MAX = 20
SCORE_NAMES = ("accuracy", "precision", "recall", "f1")
# Bounds the K x K confusion matrix (and the multilabel indicator width) a request may build.
MAX_LABELS = 2048

Scores = dict[str, np.ndarray]
# Labels per example: a list (JSON) or a 1-D numpy array; multilabel data is a list of label lists.
Examples = Sequence[Any] | np.ndarray


@dataclass(frozen=True)
class PerClass:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ConfusionMatrix:
    """Rows are references, columns predictions, both in ``labels`` order (as sklearn)."""

    labels: list[Any]
    matrix: list[list[int]]


@dataclass(frozen=True)
class MajorityBaseline:
    """Scores of always predicting the most frequent reference label (label set, for multilabel)."""

    label: Any
    accuracy: float
    f1: float | list[float]


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    average: str | None
    precision: float | list[float]
    recall: float | list[float]
    f1: float | list[float]
    per_class: dict[str, PerClass]
    labels: list[Any]
    # ConfusionMatrix for single-label data; {str(label): [[tn, fp], [fn, tp]]} for multilabel data.
    confusion_matrix: ConfusionMatrix | dict[str, list[list[int]]]
    support: int
    majority_baseline: MajorityBaseline
    warnings: list[str] = field(default_factory=list)
    confidence_intervals: dict[str, Interval] = field(default_factory=dict)


def to_dict(report: ClassificationReport) -> dict[str, Any]:
    """Plain JSON-ready dict (NaN stays a float NaN)."""
    return dataclasses.asdict(report)


# ---------------------------------------------------------------------------------------------------
# Count -> score formulas, vectorised over leading axes.
# ---------------------------------------------------------------------------------------------------


def zero_division_value(zero_division: float | str) -> float:
    """sklearn's accepted values: 0, 1, NaN ("nan"), and "warn" (which scores as 0)."""
    if zero_division in ("nan", "warn"):
        return float("nan") if zero_division == "nan" else 0.0
    numeric = isinstance(zero_division, int | float) and not isinstance(zero_division, bool)
    if numeric and (zero_division in (0, 1) or np.isnan(zero_division)):
        return float(zero_division)
    raise MetricInputError(f"zero_division must be 0, 1, 'nan' or 'warn', got {zero_division!r}", "zero_division")


def _divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.full(numerator.shape, zero_division, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator != 0, dtype=np.float64)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN when nothing is left (sklearn's _nanaverage)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1)
    return _divide(np.where(valid, values, 0.0).sum(axis=-1), count, float("nan"))


def _weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the last axis ignoring NaN; falls back to the plain mean when weights sum to 0."""
    valid = ~np.isnan(values)
    w = np.where(valid, weights, 0).astype(np.float64)
    total = w.sum(axis=-1)
    weighted = _divide((np.where(valid, values, 0.0) * w).sum(axis=-1), total, float("nan"))
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
        "precision": _divide(tp, pred_sum, zd),
        "recall": _divide(tp, true_sum, zd),
        "f1": _divide(2.0 * np.asarray(tp, np.float64), np.add(true_sum, pred_sum, dtype=np.float64), zd),
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
    scores["accuracy"] = _divide(np.trace(confusion, axis1=-2, axis2=-1), total, float("nan"))
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
    scores["accuracy"] = _divide(counts @ exact.astype(np.float64), counts.sum(axis=-1), float("nan"))
    return scores


def _count_weighted_nanmean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over examples of a per-pattern value (NaN patterns skipped), examples given as pattern counts."""
    valid = ~np.isnan(values)
    return _divide(counts @ np.where(valid, values, 0.0), counts @ valid.astype(np.float64), float("nan"))


# ---------------------------------------------------------------------------------------------------
# Input reading and label encoding.
# ---------------------------------------------------------------------------------------------------

_LIST_TYPES = (list, tuple, np.ndarray)


def _label_kind(types: set[type], field_name: str) -> str | None:
    """The label kind ("int", "str" or "bool") of some element types; raises on None, other types, a mix."""
    if type(None) in types:
        raise MetricInputError(f"{field_name} contains null labels", field_name)
    kinds = set()
    for t in types:
        if issubclass(t, bool | np.bool_):
            kinds.add("bool")
        elif issubclass(t, int | np.integer):
            kinds.add("int")
        elif issubclass(t, str):
            kinds.add("str")
        else:
            raise MetricInputError(
                f"{field_name} has a label of type {t.__name__}; labels must be int, str or bool", field_name
            )
    if len(kinds) > 1:
        raise MetricInputError(f"{field_name} mixes label types {sorted(kinds)}", field_name)
    return kinds.pop() if kinds else None


@dataclass(frozen=True)
class _Column:
    """One validated input: single-label values, or multilabel values flattened with per-example lengths."""

    kind: str | None
    values: np.ndarray | list[Any]
    lengths: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        return len(self.values) if self.lengths is None else len(self.lengths)


def _as_values(values: Sequence[Any], kind: str | None, field_name: str) -> np.ndarray | list[Any]:
    if kind == "str" or kind is None:
        return list(values)
    if kind == "int":
        try:  # class ids in 0..255, the common case, convert at C speed, twice as fast as np.fromiter
            return np.frombuffer(bytes(values), dtype=np.uint8)
        except ValueError:
            pass
    try:
        return np.fromiter(values, dtype=np.int64 if kind == "int" else np.bool_, count=len(values))
    except OverflowError as exc:
        raise MetricInputError(f"{field_name}: integer labels must fit in 64 bits", field_name) from exc


def _read(data: Any, field_name: str) -> _Column:
    if isinstance(data, str | bytes) or not hasattr(data, "__len__"):
        raise MetricInputError(f"{field_name} must be a list of labels", field_name)
    if isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "iub":
        if data.dtype.kind == "b":
            return _Column("bool", data)
        if data.dtype == np.uint64 and data.size and data.max() > np.iinfo(np.int64).max:
            raise MetricInputError("integer labels must fit in 64 bits", field_name)
        return _Column("int", data.astype(np.int64, copy=False))
    items = data.tolist() if isinstance(data, np.ndarray) else data
    types = set(map(type, items))
    nested = {t for t in types if issubclass(t, _LIST_TYPES)}
    if not nested:
        kind = _label_kind(types, field_name)
        return _Column(kind, _as_values(items, kind, field_name))
    if nested != types:
        raise MetricInputError(f"{field_name} mixes single labels and label lists (multilabel examples)", field_name)
    flat = list(itertools.chain.from_iterable(items))
    kind = _label_kind(set(map(type, flat)), field_name)
    lengths = np.fromiter(map(len, items), dtype=np.intp, count=len(items))
    return _Column(kind, _as_values(flat, kind, field_name), lengths)


def _common_kind(columns: Mapping[str, _Column]) -> str | None:
    kinds = {name: c.kind for name, c in columns.items() if c.kind is not None}
    if len(set(kinds.values())) > 1:
        detail = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise MetricInputError(f"label types differ between inputs ({detail})", next(iter(columns)))
    return next(iter(kinds.values()), None)


def _check_labels_param(labels: Sequence[Any], kind: str | None) -> list[Any]:
    if isinstance(labels, str | bytes) or len(labels) == 0:
        raise MetricInputError("labels must be a non-empty list", "labels")
    values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    labels_kind = _label_kind(set(map(type, values)), "labels")
    if kind is not None and labels_kind != kind:
        raise MetricInputError(f"labels are {labels_kind} but the data labels are {kind}", "labels")
    if len(set(values)) != len(values):
        raise MetricInputError("labels contains duplicates", "labels")
    return values


def _present_codes(parts: Sequence[np.ndarray | list[Any]], kind: str | None) -> tuple[list[Any], list[np.ndarray]]:
    """Sorted distinct labels over all parts, and each part as indices into them."""
    if kind == "str" or kind is None:
        present = sorted(set().union(*parts))
        index = {label: i for i, label in enumerate(present)}
        lookup = index.__getitem__
        return present, [np.fromiter(map(lookup, p), dtype=np.intp, count=len(p)) for p in parts]
    sizes = np.cumsum([len(p) for p in parts])[:-1]
    both = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if both.size == 0:
        return [], [np.zeros(0, np.intp) for _ in parts]
    lo, hi = int(both.min()), int(both.max())
    if hi - lo <= 2 * both.size + 1024:
        # Dense range: a lookup table is O(n), far faster than np.unique's sort.
        offsets = both - lo
        occupied = np.bincount(offsets, minlength=hi - lo + 1) > 0
        codes = offsets if occupied.all() else (np.cumsum(occupied) - 1)[offsets]
        values = np.flatnonzero(occupied) + lo
    else:
        values, codes = np.unique(both, return_inverse=True)
    present = [bool(v) for v in values] if kind == "bool" else values.tolist()
    return present, np.split(codes.astype(np.intp, copy=False), sizes)


def _universe(present: list[Any], labels: list[Any] | None) -> tuple[list[Any], np.ndarray | None]:
    """Label universe with the report labels first, and the map from present-label index into it.

    Report labels are ``labels`` in the given order, else every present label sorted (sklearn's order).
    Present labels outside ``labels`` follow, sorted: they still count in accuracy and sums.
    """
    if labels is None:
        return present, None
    chosen = set(labels)
    universe = labels + [label for label in present if label not in chosen]
    index = {label: i for i, label in enumerate(universe)}
    return universe, np.array([index[label] for label in present], dtype=np.intp)


def _check_lengths(columns: Mapping[str, _Column]) -> None:
    (first, column), *rest = columns.items()
    for name, other in rest:
        if other.n_examples != column.n_examples:
            raise MetricInputError(f"{first} has {column.n_examples} examples but {name} has {other.n_examples}", first)
    if column.n_examples == 0:
        raise MetricInputError(f"{first} is empty; at least one example is required", first)


def _encode(read: Mapping[str, _Column], labels: Sequence[Any] | None) -> tuple[list[Any], int, list[np.ndarray]]:
    """Universe (report labels first), number of report labels, and every input's values as indices."""
    kind = _common_kind(read)
    chosen = None if labels is None else _check_labels_param(labels, kind)
    present, codes = _present_codes([c.values for c in read.values()], kind)
    universe, remap = _universe(present, chosen)
    if len(universe) > MAX_LABELS:
        raise MetricInputError(f"{len(universe)} distinct labels; at most {MAX_LABELS} are supported", "labels")
    n_report = len(present) if chosen is None else len(chosen)
    return universe, n_report, [c if remap is None else remap[c] for c in codes]


def label_codes(
    columns: Mapping[str, Examples], labels: Sequence[Any] | None = None
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Validate equally long single-label inputs (e.g. references and two systems) and encode them jointly.

    Returns the label universe (``labels`` first, then the other present labels sorted) and each input
    as int indices into it, ready for a joint ``np.bincount``. Keys name the inputs in errors.
    """
    read = {name: _read(data, name) for name, data in columns.items()}
    _check_lengths(read)
    for name, column in read.items():
        if column.lengths is not None:
            raise MetricInputError(f"{name} holds label lists; expected one label per example", name)
    universe, _, codes = _encode(read, labels)
    return universe, dict(zip(read, codes, strict=True))


# ---------------------------------------------------------------------------------------------------
# Counting: single-label confusion cells or multilabel patterns, behind one scoring interface.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counted:
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
            f"average='binary' needs at most two labels but {len(present)} occur ({_show(present)}); "
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


def _count_single(
    universe: list[Any],
    n_report: int,
    pred: np.ndarray,
    true: np.ndarray,
    average: str | None,
    pos_label: Any,
    zero_division: float,
) -> _Counted:
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
    return _Counted(
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


def _indicator(codes: np.ndarray, lengths: np.ndarray, n_labels: int) -> np.ndarray:
    matrix = np.zeros((len(lengths), n_labels), dtype=bool)
    matrix[np.repeat(np.arange(len(lengths)), lengths), codes] = True
    return matrix


def _unique_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _count_multilabel(
    universe: list[Any],
    n_report: int,
    pred: np.ndarray,
    true: np.ndarray,
    average: str | None,
    zero_division: float,
) -> _Counted:
    """``pred`` and ``true`` are (n, L) indicator matrices over the universe."""
    if average == "binary":
        raise MetricInputError("average='binary' is not defined for multilabel data", "average")
    n_labels = len(universe)
    patterns, counts = _unique_rows(np.concatenate([true, pred], axis=1))
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
    refs, ref_counts = _unique_rows(true)
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
    return _Counted(
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


# ---------------------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------------------


def _show(labels: Sequence[Any]) -> str:
    shown = ", ".join(repr(label) for label in labels[:WARN_LIST_MAX])
    more = f", ... ({len(labels) - WARN_LIST_MAX} more)" if len(labels) > WARN_LIST_MAX else ""
    return f"[{shown}{more}]"


def _check_options(
    average: str | None, confidence_level: float, n_resamples: int, max_resamples: int | None, seed: int | None
) -> None:
    if average not in AVERAGES:
        raise MetricInputError(f"average must be one of {list(AVERAGES)}, got {average!r}", "average")
    if (
        isinstance(confidence_level, bool)
        or not isinstance(confidence_level, int | float)
        or not (0 < confidence_level < 1)
    ):
        raise MetricInputError(f"confidence_level must be in (0, 1), got {confidence_level!r}", "confidence_level")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 0:
        raise MetricInputError(f"n_resamples must be a non-negative integer, got {n_resamples!r}", "n_resamples")
    if max_resamples is not None and n_resamples > max_resamples:
        raise MetricInputError(f"n_resamples={n_resamples} exceeds the limit of {max_resamples}", "n_resamples")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise MetricInputError("seed must be a non-negative integer or null", "seed")


def _label_warnings(counted: _Counted, labels_given: bool) -> list[str]:
    out = []
    if counted.baseline_share >= IMBALANCE_SHARE:
        out.append(
            f"imbalanced: the majority class {counted.baseline_label!r} is {counted.baseline_share:.0%} of "
            "references; accuracy is misleading, compare f1 with majority_baseline"
        )
    universe, true_sum, pred_sum = counted.universe, counted.true_sum, counted.pred_sum
    unreferenced = [universe[i] for i in np.flatnonzero((pred_sum > 0) & (true_sum == 0))]
    if unreferenced:
        out.append(f"labels in predictions but not in references: {_show(unreferenced)}")
    if labels_given:
        n = counted.n_report
        unused = [universe[i] for i in np.flatnonzero((pred_sum[:n] == 0) & (true_sum[:n] == 0))]
        if unused:
            out.append(f"labels in labels but in neither predictions nor references: {_show(unused)}")
        ignored = [universe[i] for i in np.flatnonzero((pred_sum[n:] + true_sum[n:]) > 0) + n]
        if ignored:
            out.append(f"labels in the data but not in labels (not scored; they count in accuracy): {_show(ignored)}")
    return out


def _zero_division_warnings(counted: _Counted, average: str | None, zero_division: float | str) -> list[str]:
    """Mirror sklearn's UndefinedMetricWarning, naming the labels concerned."""
    if average == "samples":
        return []
    true_sum, pred_sum = counted.true_sum[counted.scored], counted.pred_sum[counted.scored]
    if average == "micro":
        true_sum, pred_sum = true_sum.sum(keepdims=True), pred_sum.sum(keepdims=True)
    names = ["all labels"] if average == "micro" else [counted.universe[i] for i in counted.scored]
    checks = [
        ("precision", "no predictions", pred_sum == 0),
        ("recall", "no references", true_sum == 0),
        ("f1", "neither references nor predictions", (pred_sum == 0) & (true_sum == 0)),
    ]
    return [
        f"{metric} is ill-defined ({why}) for {_show([names[i] for i in np.flatnonzero(mask)])}; "
        f"set to zero_division={zero_division!r}"
        for metric, why, mask in checks
        if mask.any()
    ]


def _value(array: np.ndarray) -> float | list[float]:
    return float(array) if array.ndim == 0 else [float(v) for v in array]


def _resample_scores(
    cells: np.ndarray, n_resamples: int, rng: np.random.Generator, score: Callable[[np.ndarray], Scores]
) -> Scores:
    """Scores of bootstrap resamples, drawing only over occupied cells, in memory-bounded chunks."""
    occupied = np.flatnonzero(cells)
    rows = max(1, CHUNK_CELLS // cells.size)
    parts = []
    for start in range(0, n_resamples, rows):
        checkpoint()
        draws = cell_counts_resamples(cells[occupied], min(rows, n_resamples - start), rng)
        full = np.zeros((len(draws), cells.size), dtype=np.int64)
        full[:, occupied] = draws
        parts.append(score(full))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _intervals(
    counted: _Counted, average: str | None, confidence_level: float, n_resamples: int, seed: int | None
) -> dict[str, Interval]:
    draws = _resample_scores(counted.cells, n_resamples, make_rng(seed), lambda cells: counted.score(cells, average))
    intervals = {}
    for name in SCORE_NAMES:
        values = draws[name]
        if values.ndim == 1:
            intervals[name] = percentile_interval(values, confidence_level)
        else:
            for j, label in enumerate(counted.universe[: counted.n_report]):
                intervals[f"{name}[{label}]"] = percentile_interval(values[:, j], confidence_level)
    return intervals


def classification_report(
    predictions: Examples,
    references: Examples,
    *,
    average: str | None = "macro",
    labels: Sequence[Any] | None = None,
    pos_label: str | int = 1,
    zero_division: float | str = 0,
    confidence_level: float = 0.95,
    n_resamples: int = 0,
    seed: int | None = 0,
    max_resamples: int | None = None,
) -> ClassificationReport:
    """Accuracy, precision, recall, F1 (sklearn semantics) per class, confusion, majority baseline, intervals.

    Inputs are one label per example (int, str or bool), or one list of labels per example
    (multilabel; accuracy is then subset accuracy). With ``n_resamples > 0`` the averaged scores get
    percentile bootstrap intervals (per label when ``average`` is None, keyed ``"f1[label]"``).
    Raises MetricInputError for bad input.
    """
    _check_options(average, confidence_level, n_resamples, max_resamples, seed)
    zd = zero_division_value(zero_division)
    read = {"predictions": _read(predictions, "predictions"), "references": _read(references, "references")}
    _check_lengths(read)
    pred, true = read["predictions"], read["references"]
    if (pred.lengths is None) != (true.lengths is None):
        raise MetricInputError(
            "predictions and references must both be single labels or both label lists", "predictions"
        )
    universe, n_report, (pred_codes, true_codes) = _encode(read, labels)
    if pred.lengths is None or true.lengths is None:
        counted = _count_single(universe, n_report, pred_codes, true_codes, average, pos_label, zd)
    elif not universe:
        raise MetricInputError("every example has an empty label set; pass labels to score them", "references")
    else:
        counted = _count_multilabel(
            universe,
            n_report,
            _indicator(pred_codes, pred.lengths, len(universe)),
            _indicator(true_codes, true.lengths, len(universe)),
            average,
            zd,
        )
    point = {name: values[0] for name, values in counted.score(counted.cells[None], average).items()}
    per_class = {name: values[0] for name, values in counted.score(counted.cells[None], None).items()}
    report_labels = counted.universe[:n_report]
    return ClassificationReport(
        accuracy=float(point["accuracy"]),
        average=average,
        precision=_value(point["precision"]),
        recall=_value(point["recall"]),
        f1=_value(point["f1"]),
        per_class={
            str(label): PerClass(
                float(per_class["precision"][i]),
                float(per_class["recall"][i]),
                float(per_class["f1"][i]),
                int(counted.true_sum[i]),
            )
            for i, label in enumerate(report_labels)
        },
        labels=report_labels,
        confusion_matrix=counted.confusion,
        support=pred.n_examples,
        majority_baseline=MajorityBaseline(
            counted.baseline_label,
            float(counted.baseline_share),
            _value(counted.baseline_scores["f1"][0]),
        ),
        warnings=_label_warnings(counted, labels is not None)
        + _zero_division_warnings(counted, average, zero_division),
        confidence_intervals=(
            _intervals(counted, average, confidence_level, n_resamples, seed) if n_resamples > 0 else {}
        ),
    )
