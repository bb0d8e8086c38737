"""The classification report: point scores, per-class scores, confusion, majority baseline, warnings, intervals."""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metrics.bootstrap import Interval, make_rng, multinomial_resamples, percentile_interval
from metrics.calibration import Calibration, calibration_report
from metrics.classification.counts import ConfusionMatrix, Counted, count_multilabel, count_single, show_labels
from metrics.classification.encoding import Encoded, Examples, encode
from metrics.classification.probabilities import probability_matrix
from metrics.classification.scores import Scores, zero_division_value
from metrics.errors import MetricInputError
from metrics.options import check_average, check_confidence_level, check_resamples, check_seed
from metrics.slices import group_positions, take

# A majority class at or above this share of references makes accuracy a misleading headline.
IMBALANCE_SHARE = 0.8
SCORE_NAMES = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class PerClass:
    precision: float
    recall: float
    f1: float
    support: int


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
    calibration: Calibration | None = None
    """With probabilities: ECE, Brier, log loss and reliability bins (single-label only)."""
    slices: "dict[str, ClassificationReport] | None" = None
    """With groups: the same report on each group's examples alone."""


def to_dict(report: ClassificationReport) -> dict[str, Any]:
    """Plain JSON-ready dict (NaN stays a float NaN)."""
    return dataclasses.asdict(report)


def _label_warnings(counted: Counted, labels_given: bool) -> list[str]:
    out = []
    if counted.baseline_share >= IMBALANCE_SHARE:
        out.append(
            f"imbalanced: the majority class {counted.baseline_label!r} is {counted.baseline_share:.0%} of "
            "references; accuracy is misleading, compare f1 with majority_baseline"
        )
    universe, true_sum, pred_sum = counted.universe, counted.true_sum, counted.pred_sum
    unreferenced = [universe[i] for i in np.flatnonzero((pred_sum > 0) & (true_sum == 0))]
    if unreferenced:
        out.append(f"labels in predictions but not in references: {show_labels(unreferenced)}")
    if labels_given:
        n = counted.n_report
        unused = [universe[i] for i in np.flatnonzero((pred_sum[:n] == 0) & (true_sum[:n] == 0))]
        if unused:
            out.append(f"labels in labels but in neither predictions nor references: {show_labels(unused)}")
        ignored = [universe[i] for i in np.flatnonzero((pred_sum[n:] + true_sum[n:]) > 0) + n]
        if ignored:
            out.append(
                f"labels in the data but not in labels (not scored; they count in accuracy): {show_labels(ignored)}"
            )
    return out


def _zero_division_warnings(counted: Counted, average: str | None, zero_division: float | str) -> list[str]:
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
        f"{metric} is ill-defined ({why}) for {show_labels([names[i] for i in np.flatnonzero(mask)])}; "
        f"set to zero_division={zero_division!r}"
        for metric, why, mask in checks
        if mask.any()
    ]


def _value(array: np.ndarray) -> float | list[float]:
    return float(array) if array.ndim == 0 else [float(v) for v in array]


def _resample_scores(
    cells: np.ndarray, n_resamples: int, rng: np.random.Generator, score: Callable[[np.ndarray], Scores]
) -> Scores:
    """Scores of bootstrap resamples of the counted examples, scored one chunk of resamples at a time."""
    parts = [score(counts) for counts in multinomial_resamples(cells, n_resamples, rng)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _intervals(
    counted: Counted, average: str | None, confidence_level: float, n_resamples: int, seed: int | None
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
    probabilities: Sequence[Mapping[Any, float]] | None = None,
    groups: Sequence[str] | None = None,
) -> ClassificationReport:
    """Accuracy, precision, recall, F1 (sklearn semantics) per class, confusion, majority baseline, intervals.

    Inputs are one label per example (int, str or bool), or one list of labels per example
    (multilabel; accuracy is then subset accuracy). With ``n_resamples > 0`` the averaged scores get
    percentile bootstrap intervals (per label when ``average`` is None, keyed ``"f1[label]"``).
    ``probabilities`` (one {label: probability} object per example) adds ``calibration``; ``groups`` (one
    string per example) adds ``slices``, each the report of one group's examples with the same options.
    Raises MetricInputError for bad input.
    """
    average = check_average(average)
    level = check_confidence_level(confidence_level)
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=0)
    seed = check_seed(seed)
    zd = zero_division_value(zero_division)
    encoded = encode({"predictions": predictions, "references": references}, labels)
    options: dict[str, Any] = {
        "average": average,
        "labels": labels,
        "pos_label": pos_label,
        "zero_division": zero_division,
        "confidence_level": level,
        "n_resamples": n_resamples,
        "seed": seed,
    }
    calibration = None
    if probabilities is not None:
        calibration = _calibration(encoded, probabilities, level, n_resamples, seed)
    slices = None
    if groups is not None:
        slices = {
            name: classification_report(
                take(predictions, part),
                take(references, part),
                probabilities=None if probabilities is None else take(probabilities, part),
                **options,
            )
            for name, part in group_positions(groups, encoded.n_examples).items()
        }
    counted = _count(encoded, average, pos_label, zd)
    n_report = encoded.n_report
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
        support=encoded.n_examples,
        majority_baseline=MajorityBaseline(
            counted.baseline_label,
            float(counted.baseline_share),
            _value(counted.baseline_scores["f1"][0]),
        ),
        warnings=_label_warnings(counted, labels is not None)
        + _zero_division_warnings(counted, average, zero_division),
        confidence_intervals=(_intervals(counted, average, level, n_resamples, seed) if n_resamples > 0 else {}),
        calibration=calibration,
        slices=slices,
    )


def _count(encoded: Encoded, average: str | None, pos_label: str | int, zd: float) -> Counted:
    universe, n_report, codes = encoded.universe, encoded.n_report, encoded.codes
    if encoded.lengths is None:
        return count_single(universe, n_report, codes["predictions"], codes["references"], average, pos_label, zd)
    if not universe:
        raise MetricInputError("every example has an empty label set; pass labels to score them", "references")
    pred, true = encoded.indicator("predictions"), encoded.indicator("references")
    return count_multilabel(universe, n_report, pred, true, average, zd)


def score_draws(
    predictions: Examples,
    references: Examples,
    *,
    average: str = "macro",
    labels: Sequence[Any] | None = None,
    pos_label: str | int = 1,
    zero_division: float | str = 0,
    n_resamples: int,
    seed: int | None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The averaged scores and their values on ``n_resamples`` bootstrap resamples of the examples.

    For comparisons between independent samples (an unpaired bootstrap), each side resampled on its own.
    """
    checked = check_average(average)
    if checked is None:
        raise MetricInputError("score_draws needs an averaged score; average must not be None", "average")
    encoded = encode({"predictions": predictions, "references": references}, labels)
    counted = _count(encoded, checked, pos_label, zero_division_value(zero_division))
    point = {name: float(values[0]) for name, values in counted.score(counted.cells[None], checked).items()}
    draws = _resample_scores(counted.cells, n_resamples, make_rng(seed), lambda cells: counted.score(cells, checked))
    return {name: point[name] for name in SCORE_NAMES}, {name: draws[name] for name in SCORE_NAMES}


def _calibration(
    encoded: Encoded, probabilities: Sequence[Mapping[Any, float]], level: float, n_resamples: int, seed: int | None
) -> Calibration:
    if encoded.lengths is not None:
        raise MetricInputError("probabilities apply to single-label examples only", "probabilities")
    matrix = probability_matrix(probabilities, encoded.universe, encoded.n_examples)
    codes = encoded.codes
    return calibration_report(
        matrix,
        codes["references"],
        codes["predictions"],
        confidence_level=level,
        n_resamples=n_resamples,
        seed=seed,
    )
