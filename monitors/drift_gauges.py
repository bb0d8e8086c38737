"""Online accuracy and drift series, and the one place that sets them.

Every replica (and every worker process) loads the same values from the database, at start and then
periodically, so gauges use ``mostrecent`` in multiprocess mode and survive restarts. Label values are
bounded: ``model`` is a served model's name and ``column`` one of the fixed drift columns.
"""

import contextlib
import threading
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from monitors.online_accuracy import OnlineScores

DRIFT_CHECK_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

online_accuracy = Gauge(
    "heldout_online_accuracy",
    "Accuracy of the served model on the feedback window (delayed ground truth).",
    ["model"],
    multiprocess_mode="mostrecent",
)
online_f1 = Gauge(
    "heldout_online_f1",
    "Macro F1 of the served model on the feedback window, over the labels present in it.",
    ["model"],
    multiprocess_mode="mostrecent",
)
estimated_accuracy = Gauge(
    "heldout_estimated_accuracy",
    "Label-free (CBPE) accuracy estimate of the served model on the latest drift check's window.",
    ["model"],
    multiprocess_mode="mostrecent",
)
estimated_f1 = Gauge(
    "heldout_estimated_f1",
    "Label-free (CBPE) macro F1 estimate of the served model on the latest drift check's window.",
    ["model"],
    multiprocess_mode="mostrecent",
)
feedback_total = Counter("heldout_feedback_total", "Feedback items accepted by /v1/feedback.", ["model"])
drift_share = Gauge(
    "heldout_drift_share",
    "Share of drifted columns in the latest successful drift check.",
    ["model"],
    multiprocess_mode="mostrecent",
)
drift_detected = Gauge(
    "heldout_drift_detected",
    "1 when the latest successful drift check found dataset drift, else 0.",
    ["model"],
    multiprocess_mode="mostrecent",
)
drift_score = Gauge(
    "heldout_drift_score",
    "Per-column drift score of the latest successful check (p-value or distance, as its method defines).",
    ["model", "column", "method"],
    multiprocess_mode="mostrecent",
)
drift_check_timestamp_seconds = Gauge(
    "heldout_drift_check_timestamp_seconds",
    "Unix time the latest successful drift check finished.",
    ["model"],
    multiprocess_mode="mostrecent",
)
drift_check_duration_seconds = Histogram(
    "heldout_drift_check_duration_seconds",
    "Wall time of drift checks run by this process, from start to stored result.",
    buckets=DRIFT_CHECK_BUCKETS,
)
drift_checks_total = Counter(
    "heldout_drift_checks_total", "Drift checks finished by this process, by status (succeeded, failed).", ["status"]
)


@dataclass(frozen=True)
class DriftSnapshot:
    model: str
    finished_at: float
    """Unix seconds."""
    share: float
    detected: bool
    scores: list[tuple[str, str, float]]
    """(column, method, score)."""
    estimated_accuracy: float | None = None
    """CBPE's estimate for the window; None when the check had none (the series is then dropped)."""
    estimated_f1: float | None = None


_lock = threading.Lock()
_score_labels: dict[str, set[tuple[str, str]]] = {}
_published_at: dict[str, float] = {}


def publish_drift(snapshot: DriftSnapshot) -> None:
    """Set the model's drift series, unless a later check is already shown; drop columns no longer checked."""
    with _lock:
        if _published_at.get(snapshot.model, float("-inf")) > snapshot.finished_at:
            return
        _published_at[snapshot.model] = snapshot.finished_at
        drift_share.labels(snapshot.model).set(snapshot.share)
        drift_detected.labels(snapshot.model).set(1 if snapshot.detected else 0)
        drift_check_timestamp_seconds.labels(snapshot.model).set(snapshot.finished_at)
        current = {(column, method) for column, method, _ in snapshot.scores}
        for column, method in _score_labels.get(snapshot.model, set()) - current:
            drift_score.remove(snapshot.model, column, method)
        for column, method, score in snapshot.scores:
            drift_score.labels(snapshot.model, column, method).set(score)
        _score_labels[snapshot.model] = current
        for gauge, value in ((estimated_accuracy, snapshot.estimated_accuracy), (estimated_f1, snapshot.estimated_f1)):
            if value is not None:
                gauge.labels(snapshot.model).set(value)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(snapshot.model)


def publish_online(model: str, scores: OnlineScores) -> None:
    online_accuracy.labels(model).set(scores.accuracy)
    online_f1.labels(model).set(scores.f1)


def count_feedback(model: str, n: int) -> None:
    feedback_total.labels(model).inc(n)


def count_check(status: str, duration_s: float | None) -> None:
    drift_checks_total.labels(status).inc()
    if duration_s is not None:
        drift_check_duration_seconds.observe(duration_s)
