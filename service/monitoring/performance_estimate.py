"""A drift check's label-free performance estimate: CBPE maps from an evaluation, applied to the window.

The maps come from the newest succeeded evaluation of the window's model version (the version of its newest
prediction) on a blind classification set; only the fitted maps were stored, never the set's labels. They
are applied to the window's predictions by that version, each logged with every label's probability.
Where there is nothing to fit from or apply to, the estimate is None with the reason.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from metrics.performance_estimation import PerformanceEstimator, estimate_performance
from service.db.models import Evaluation, PredictionLogEntry
from service.monitoring.window import Window, in_window

# Evaluations of one model version looked through for the newest with fitted maps.
CANDIDATES = 20


@dataclass(frozen=True)
class EstimateOutcome:
    estimate: dict[str, Any] | None
    """{"accuracy": {value, low, high}, "f1": {...}, "rows", "model_version", "evaluation"}."""
    reason: str | None
    """Why there is no estimate."""


def _newest_version(session: Session, window: Window) -> str | None:
    query = (
        select(PredictionLogEntry.model_version)
        .where(*in_window(window))
        .order_by(PredictionLogEntry.created_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _estimator(session: Session, model: str, version: str) -> tuple[int, PerformanceEstimator] | None:
    rows = session.execute(
        select(Evaluation.id, Evaluation.result)
        .where(
            Evaluation.model == model,
            Evaluation.model_version == version,
            Evaluation.status == "succeeded",
            Evaluation.task == "classification",
        )
        .order_by(Evaluation.finished_at.desc(), Evaluation.id.desc())
        .limit(CANDIDATES)
    )
    for evaluation_id, result in rows:
        fitted = (result or {}).get("performance_estimator")
        if fitted:
            return evaluation_id, PerformanceEstimator.from_json(fitted)
    return None


def _probabilities(session: Session, window: Window, version: str, n_labels: int, max_rows: int) -> np.ndarray:
    query = (
        select(PredictionLogEntry.output)
        .where(*in_window(window), PredictionLogEntry.model_version == version)
        .order_by(PredictionLogEntry.created_at.desc())
        .limit(max_rows)
    )
    rows = [
        output["probabilities"]
        for output in session.scalars(query)
        if isinstance(output, dict) and isinstance(output.get("probabilities"), list)
    ]
    return np.asarray([row for row in rows if len(row) == n_labels], dtype=np.float64).reshape(-1, n_labels)


def estimate_window(session: Session, window: Window, max_rows: int, seed: int = 0) -> EstimateOutcome:
    version = _newest_version(session, window)
    if version is None:
        return EstimateOutcome(None, "the window holds no logged predictions")
    found = _estimator(session, window.model, version)
    short = version[:12]
    if found is None:
        return EstimateOutcome(
            None,
            f"no succeeded evaluation of {window.model} (version {short}) on a blind single-label classification "
            "set to fit the calibration from; POST /v1/evaluations with one",
        )
    evaluation_id, estimator = found
    probabilities = _probabilities(session, window, version, len(estimator.labels), max_rows)
    if len(probabilities) == 0:
        return EstimateOutcome(
            None,
            f"none of the window's predictions by version {short} was logged with its label probabilities",
        )
    estimate = estimate_performance(estimator, probabilities, seed=seed)
    return EstimateOutcome(
        {
            "accuracy": asdict(estimate.accuracy),
            "f1": asdict(estimate.f1),
            "rows": estimate.rows,
            "model_version": version,
            "evaluation": evaluation_id,
        },
        None,
    )
