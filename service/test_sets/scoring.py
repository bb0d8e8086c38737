"""Predictions against a set's hidden targets → aggregate metrics and intervals, nothing per example.

Used by external scoring (``/scores``) and by evaluation jobs alike, so both report the same numbers
as ``/v1/metrics/classification`` and ``/v1/metrics/generation``: the same ``metrics`` functions,
with the set's fixed options. Predicted labels outside the set's label set count as wrong and are
not averaged over (scikit-learn's ``labels=`` semantics); for a binary set they are refused.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metrics.bootstrap import Interval
from metrics.classification import classification_report
from metrics.generation import generation_report, metric_specs
from metrics.generation_stats import MetricSpec
from metrics.slices import OTHER, group_positions, releasable, take
from service.domain_errors import FieldProblem
from service.tasks import Task
from service.test_sets.config import CLASSIFICATION_METRICS, GENERATION_METRICS, LOWER_IS_BETTER, SetConfig
from service.test_sets.errors import PredictionsInvalid

CONFIDENCE_LEVEL = 0.95
SEED = 0
# Ids named in a refusal before the rest are summarised as a count.
MAX_NAMED_IDS = 20
# Stands for every predicted label outside a string-labelled set; NUL never occurs in stored labels.
OTHER_STR = "\x00other"


@dataclass(frozen=True)
class Slice:
    metrics: dict[str, float]
    intervals: dict[str, Interval]
    support: int


@dataclass(frozen=True)
class WorstSlice:
    group: str
    metric: str
    value: float


@dataclass(frozen=True)
class Report:
    metrics: dict[str, float]
    intervals: dict[str, Interval]
    slices: dict[str, Slice] | None = None
    """Per releasable group; None where the set has no groups or slices were not asked for."""
    worst_slice: WorstSlice | None = None


@dataclass(frozen=True)
class SetTargets:
    """What scoring needs of a stored set: its ids and hidden targets in order, its labels and options."""

    task: Task
    ids: list[str]
    targets: list[Any]
    labels: list[Any] | None
    multilabel: bool
    config: SetConfig
    groups: list[str | None] | None = None
    """Each record's group (None: ungrouped, pooled into ``other``); None when the set has no groups."""


def _named(ids: Sequence[str], total: int) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_NAMED_IDS])
    return shown + (f" and {total - MAX_NAMED_IDS} more" if total > MAX_NAMED_IDS else "")


def align(ids: Sequence[str], predictions: Mapping[str, Any]) -> list[Any]:
    """Predictions in set order; the refusal names missing and unknown ids (ids are public, labels are not)."""
    missing = [i for i in ids if i not in predictions]
    unknown: list[str] = []
    if missing or len(predictions) != len(ids):
        known = set(ids)
        unknown = [i for i in predictions if i not in known]
    problems = []
    if missing:
        problems.append(FieldProblem("predictions", f"missing ids: {_named(missing, len(missing))}"))
    if unknown:
        problems.append(FieldProblem("predictions", f"unknown ids: {_named(unknown, len(unknown))}"))
    if problems:
        raise PredictionsInvalid("; ".join(p.message for p in problems), problems=problems)
    return [predictions[i] for i in ids]


def _other(labels: list[Any]) -> Any:
    if not labels or isinstance(labels[0], str):
        return OTHER_STR
    return min(labels) - 1 if min(labels) > -(2**63) else max(labels) + 1


def normalize_labels(values: Sequence[Any], ids: Sequence[str], target: SetTargets) -> list[Any]:
    """Predicted labels mapped onto the set's labels (by their text, so "1" and 1 agree with a CSV set)."""
    labels = target.labels or []
    lookup = {str(label): label for label in labels}
    other = _other(labels)
    binary = target.config.average == "binary"
    shape_errors: list[str] = []
    outside: list[str] = []

    def one(value: Any, record_id: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            shape_errors.append(record_id)
            return other
        found = lookup.get(str(value), other)
        if found is other:
            outside.append(record_id)
        return found

    out: list[Any] = []
    for value, record_id in zip(values, ids, strict=True):
        if target.multilabel != isinstance(value, list):
            shape_errors.append(record_id)
            out.append([] if target.multilabel else other)
        elif target.multilabel:
            out.append(sorted({one(v, record_id) for v in value}, key=str))
        else:
            out.append(one(value, record_id))
    if shape_errors:
        expected = "a list of labels (multilabel set)" if target.multilabel else "one label (a string or an integer)"
        raise PredictionsInvalid(
            f"predictions must each be {expected}; not so for ids {_named(shape_errors, len(shape_errors))}",
            problems=[FieldProblem("predictions", f"expected {expected}")],
        )
    if binary and outside:
        named = _named(outside, len(outside))
        message = f"a binary set's predictions must be one of its two labels; not so for ids {named}"
        raise PredictionsInvalid(message, problems=[FieldProblem("predictions", message)])
    return out


def normalize_texts(values: Sequence[Any], ids: Sequence[str]) -> list[str]:
    bad = [record_id for value, record_id in zip(values, ids, strict=True) if not isinstance(value, str)]
    if bad:
        message = f"generation predictions must be strings; not so for ids {_named(bad, len(bad))}"
        raise PredictionsInvalid(message, problems=[FieldProblem("predictions", message)])
    return list(values)


def normalize(values: Sequence[Any], target: SetTargets) -> list[Any]:
    if target.task is Task.classification:
        return normalize_labels(values, target.ids, target)
    return normalize_texts(values, target.ids)


def classification_options(target: SetTargets) -> dict[str, Any]:
    config = target.config
    binary = config.average == "binary"
    return {
        "average": config.average,
        "labels": None if binary else target.labels,
        "pos_label": config.pos_label if binary and config.pos_label is not None else 1,
        "zero_division": 0,
    }


def generation_options(target: SetTargets) -> dict[str, Any]:
    """The set's ROUGE options; everything else keeps sacrebleu's defaults, as ``generation_specs`` does."""
    return {"rouge_tokenize": target.config.rouge_tokenize, "rouge_stemmer": target.config.rouge_stemmer}


def generation_specs(target: SetTargets, metrics: Sequence[str]) -> list[MetricSpec]:
    """The definitions behind a generation set's scores, for code that works on their statistics."""
    return metric_specs(
        metrics,
        tokenize="13a",
        lowercase=False,
        chrf_word_order=0,
        rouge_stemmer=target.config.rouge_stemmer,
        rouge_tokenize=target.config.rouge_tokenize,
    )


def _present_labels(predictions: list[Any], target: SetTargets) -> list[Any] | None:
    """The set's labels that a slice's references or predictions use: a slice averages over those only."""
    if target.labels is None or target.config.average == "binary":
        return target.labels
    seen: set[Any] = set()
    for value in (*predictions, *target.targets):
        seen.update(value if isinstance(value, list) else [value])
    return [label for label in target.labels if label in seen] or target.labels


def _scores(
    predictions: list[Any], target: SetTargets, names: list[str], n_resamples: int, workers: int | None
) -> tuple[dict[str, float], dict[str, Interval]]:
    if target.task is Task.classification:
        result = classification_report(
            predictions,
            target.targets,
            **classification_options(target),
            confidence_level=CONFIDENCE_LEVEL,
            n_resamples=n_resamples,
            seed=SEED,
        )
        return (
            {name: float(getattr(result, name)) for name in names},
            {name: result.confidence_intervals[name] for name in names if name in result.confidence_intervals},
        )
    scores = generation_report(
        predictions,
        target.targets,
        metrics=names,
        **generation_options(target),
        confidence_level=CONFIDENCE_LEVEL,
        n_resamples=n_resamples,
        seed=SEED,
        workers=workers,
    )
    return (
        {name: float(scores[name].score) for name in names},
        {name: interval for name in names if (interval := scores[name].interval) is not None},
    )


def slice_positions(target: SetTargets, min_size: int) -> dict[str, Any]:
    """Positions of each releasable slice: groups of at least ``min_size``, the rest (and ungrouped) pooled."""
    assert target.groups is not None
    groups = [OTHER if group is None else group for group in target.groups]
    return releasable(group_positions(groups, len(groups)), min_size)


def worst_slice(slices: Mapping[str, Slice], metric: str) -> WorstSlice | None:
    """The slice scoring worst on ``metric`` (highest for a lower-is-better metric); undefined scores are skipped."""
    scored = [(name, s.metrics[metric]) for name, s in slices.items() if not math.isnan(s.metrics[metric])]
    if not scored:
        return None
    pick = max if metric in LOWER_IS_BETTER else min
    name, value = pick(scored, key=lambda item: item[1])
    return WorstSlice(name, metric, value)


def _slices(
    predictions: list[Any], target: SetTargets, names: list[str], n_resamples: int, workers: int | None, min_size: int
) -> dict[str, Slice]:
    out = {}
    for name, part in slice_positions(target, min_size).items():
        sub = dataclasses.replace(target, ids=take(target.ids, part), targets=take(target.targets, part), groups=None)
        sub_predictions = take(predictions, part)
        sub = dataclasses.replace(sub, labels=_present_labels(sub_predictions, sub))
        metrics, intervals = _scores(sub_predictions, sub, names, n_resamples, workers)
        out[name] = Slice(metrics, intervals, len(part))
    return out


def report(
    predictions: list[Any],
    target: SetTargets,
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int,
    workers: int | None = None,
    min_slice_size: int | None = None,
) -> Report:
    """Metrics (all of the task's, or ``metrics``) with percentile bootstrap intervals (seeded, reproducible).

    With ``min_slice_size`` and a grouped set, also slices (groups of at least that size, the rest pooled as
    ``other``) and the worst of them on the set's headline metric; without it, no slices are computed.
    """
    defaults = CLASSIFICATION_METRICS if target.task is Task.classification else GENERATION_METRICS
    names = list(metrics or defaults)
    values, intervals = _scores(predictions, target, names, n_resamples, workers)
    if min_slice_size is None or target.groups is None:
        return Report(values, intervals)
    slices = _slices(predictions, target, names, n_resamples, workers, min_slice_size)
    headline = target.config.ladder_metric if target.config.ladder_metric in names else names[0]
    return Report(values, intervals, slices, worst_slice(slices, headline))
