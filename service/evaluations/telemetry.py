"""Evaluation and scoring series from the database: restored at start, refreshed while running."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from monitors.evaluation_gauges import (
    HumanRatingSeries,
    ScoreSeries,
    Totals,
    publish_human_ratings,
    publish_scores,
    restore_totals,
)
from service.db.models import Evaluation, ScoringSubmission, TestSet
from service.db.session import Database

# Distinct (model, version, test set) score series restored, most recent first.
MAX_SCORE_SERIES = 200
FINISHED = ("succeeded", "failed")


def duration_s(started: datetime | None, created: datetime, finished: datetime) -> float:
    return max(0.0, (finished - (started or created)).total_seconds())


def latest_scores(db: Database) -> list[ScoreSeries]:
    """Every metric of the latest successful evaluation per (model, model version, test set name)."""
    seen: set[tuple[str, str, str]] = set()
    series: list[ScoreSeries] = []
    with db.session() as session:
        rows = session.execute(
            select(Evaluation.model, Evaluation.model_version, Evaluation.test_set_name, Evaluation.result)
            .where(Evaluation.status == "succeeded")
            .order_by(Evaluation.finished_at.desc(), Evaluation.id.desc())
        )
        for model, version, test_set, result in rows:
            key = (model, version, test_set)
            if key in seen or not result:
                continue
            seen.add(key)
            series.extend(score_series(model, version, test_set, result))
            if len(seen) >= MAX_SCORE_SERIES:
                break
    return series


def latest_human_ratings(db: Database) -> list[HumanRatingSeries]:
    """The mean rating of the latest rated evaluation per (model, model version, test set name)."""
    seen: set[tuple[str, str, str]] = set()
    series: list[HumanRatingSeries] = []
    with db.session() as session:
        rows = session.execute(
            select(Evaluation.model, Evaluation.model_version, Evaluation.test_set_name, Evaluation.human)
            .where(Evaluation.human.is_not(None))
            .order_by(Evaluation.finished_at.desc(), Evaluation.id.desc())
        )
        for model, version, test_set, human in rows:
            key = (model, version, test_set)
            if key in seen or not isinstance((human or {}).get("mean"), int | float):
                continue
            seen.add(key)
            series.append(HumanRatingSeries(model, version, test_set, float(human["mean"])))
            if len(seen) >= MAX_SCORE_SERIES:
                break
    return series


def refresh_gauges(db: Database) -> None:
    """Scores and human ratings as the database has them now (other replicas may have changed them)."""
    publish_scores(latest_scores(db))
    publish_human_ratings(latest_human_ratings(db))


def _scores(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The result's metrics, with calibration (ece, brier, log_loss) and the worst slice (worst_slice_<metric>)."""
    metrics, intervals = dict(result.get("metrics") or {}), dict(result.get("intervals") or {})
    calibration = result.get("calibration") or {}
    for name in ("ece", "brier", "log_loss"):
        if name in calibration:
            metrics[name] = calibration[name]
            intervals[name] = (calibration.get("confidence_intervals") or {}).get(name) or {}
    worst = result.get("worst_slice")
    if worst:
        name = f"worst_slice_{worst['metric']}"
        metrics[name] = worst["value"]
        intervals[name] = ((result.get("slices") or {}).get(worst["group"]) or {}).get("intervals", {}).get(
            worst["metric"]
        ) or {}
    return metrics, intervals


def _gaps(model: str, version: str, test_set: str, result: dict[str, Any]) -> list[ScoreSeries]:
    gaps = (result.get("generalization") or {}).get("gap") or {}
    return [
        ScoreSeries(model, version, test_set, metric, float(gap["value"]), gap=True)
        for metric, gap in gaps.items()
        if isinstance(gap.get("value"), int | float)
    ]


def score_series(model: str, version: str, test_set: str, result: dict[str, Any]) -> list[ScoreSeries]:
    """The scores of a result (with calibration and the worst slice), and its generalization gaps."""
    out = _gaps(model, version, test_set, result)
    metrics, intervals = _scores(result)
    for metric, value in metrics.items():
        if not isinstance(value, int | float):
            continue
        interval = intervals.get(metric) or {}
        low, high = interval.get("low"), interval.get("high")
        out.append(
            ScoreSeries(
                model,
                version,
                test_set,
                metric,
                float(value),
                float(low) if isinstance(low, int | float) else None,
                float(high) if isinstance(high, int | float) else None,
            )
        )
    return out


def restore_metrics(db: Database) -> None:
    with db.session() as session:
        evaluations = {
            status: int(n)
            for status, n in session.execute(
                select(Evaluation.status, func.count())
                .where(Evaluation.status.in_(FINISHED))
                .group_by(Evaluation.status)
            )
        }
        durations = [
            duration_s(started, created, finished)  # type: ignore[arg-type]
            for started, created, finished in session.execute(
                select(Evaluation.started_at, Evaluation.created_at, Evaluation.finished_at)
                .where(Evaluation.status == "succeeded", Evaluation.finished_at.is_not(None))
                .order_by(Evaluation.finished_at, Evaluation.id)
            )
        ]
        submissions = {
            (name, outcome): int(n)
            for name, outcome, n in session.execute(
                select(TestSet.name, ScoringSubmission.outcome, func.count())
                .join(TestSet, TestSet.id == ScoringSubmission.test_set_id)
                .group_by(TestSet.name, ScoringSubmission.outcome)
            )
        }
    restore_totals(Totals(evaluations, durations, submissions))
    refresh_gauges(db)
