"""Evaluation and scoring series: bounded label values, and their values carried over a restart.

The database is the record of evaluations and submissions; these series mirror it. At start the
counters are raised to the database's totals, once per process group: in multiprocess mode the
first worker to create a marker file in the (freshly wiped) multiprocess folder does it, so the
sum over workers is not multiplied. Single-process, raising to a total is idempotent anyway.
"""

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from monitors.instruments import (
    evaluation_duration_seconds,
    evaluation_score,
    evaluation_score_lower,
    evaluation_score_upper,
    evaluations_total,
    generalization_gap,
    human_rating,
    scoring_submissions_total,
)

# Distinct test-set names given their own label value; later names share OVERFLOW_LABEL.
MAX_TEST_SET_LABELS = 100
OVERFLOW_LABEL = "_other"
RESTORE_MARKER = "heldout-restored.marker"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_lock = threading.Lock()
_test_sets: set[str] = set()


def test_set_label(name: str) -> str:
    with _lock:
        if name in _test_sets:
            return name
        if len(_test_sets) < MAX_TEST_SET_LABELS:
            _test_sets.add(name)
            return name
    return OVERFLOW_LABEL


def count_submission(test_set: str, outcome: str) -> None:
    scoring_submissions_total.labels(test_set_label(test_set), outcome).inc()


def count_evaluation(status: str, duration_s: float | None) -> None:
    evaluations_total.labels(status).inc()
    if status == "succeeded" and duration_s is not None:
        evaluation_duration_seconds.observe(duration_s)


@dataclass(frozen=True)
class ScoreSeries:
    model: str
    model_version: str
    test_set: str
    metric: str
    value: float
    low: float | None = None
    high: float | None = None
    gap: bool = False
    """A generalization gap (heldout_generalization_gap) rather than a score."""


def publish_scores(series: Iterable[ScoreSeries]) -> None:
    for s in series:
        labels = (s.model, s.model_version, test_set_label(s.test_set), s.metric)
        if s.gap:
            generalization_gap.labels(*labels).set(s.value)
            continue
        evaluation_score.labels(*labels).set(s.value)
        if s.low is not None and s.high is not None:
            evaluation_score_lower.labels(*labels).set(s.low)
            evaluation_score_upper.labels(*labels).set(s.high)


@dataclass(frozen=True)
class HumanRatingSeries:
    model: str
    model_version: str
    test_set: str
    mean: float


def publish_human_ratings(series: Iterable[HumanRatingSeries]) -> None:
    for s in series:
        human_rating.labels(s.model, s.model_version, test_set_label(s.test_set)).set(s.mean)


@dataclass(frozen=True)
class Totals:
    evaluations: dict[str, int]
    """Finished evaluations by final status."""
    durations: list[float]
    """Durations of successful evaluations, oldest first."""
    submissions: dict[tuple[str, str], int]
    """Scoring submissions by (test set name, outcome)."""


def _claim_restore() -> bool:
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return True
    try:
        os.close(os.open(os.path.join(directory, RESTORE_MARKER), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _sample(metric: MetricWrapperBase, suffix: str, labels: dict[str, str]) -> float:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix and sample.labels == labels:
                return float(sample.value)
    return 0.0


def restore_totals(totals: Totals) -> bool:
    """Raise the counters and the duration histogram to the database's totals; False if another worker did."""
    if not _claim_restore():
        return False
    for status, n in totals.evaluations.items():
        have = _sample(evaluations_total, "_total", {"status": status})
        if n > have:
            evaluations_total.labels(status).inc(n - have)
    observed = int(_sample(evaluation_duration_seconds, "_count", {}))
    for duration in totals.durations[observed:]:
        evaluation_duration_seconds.observe(duration)
    merged: dict[tuple[str, str], int] = {}
    for (name, outcome), n in totals.submissions.items():
        key = (test_set_label(name), outcome)
        merged[key] = merged.get(key, 0) + n
    for (label, outcome), n in merged.items():
        have = _sample(scoring_submissions_total, "_total", {"test_set": label, "outcome": outcome})
        if n > have:
            scoring_submissions_total.labels(label, outcome).inc(n - have)
    return True
