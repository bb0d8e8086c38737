"""Scoring a key's submission: budget, open or ladder release, and the submission record, atomically.

The scores are computed first, outside any lock. Then one short transaction starts by upserting the
key's ``scoring_state`` row, which serialises that key's submissions (a row lock on PostgreSQL; the
write lock on SQLite), so two concurrent submissions can neither both slip under the budget nor both
replace the ladder's best.
"""

import dataclasses
import json
import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitors.evaluation_gauges import count_submission
from service.db.models import ScoringState, ScoringSubmission, TestSet, utcnow
from service.db.session import Database
from service.settings import Settings
from service.tasks import Task
from service.test_sets import ladder
from service.test_sets.config import SetConfig
from service.test_sets.errors import BudgetExhausted
from service.test_sets.paired import compare
from service.test_sets.scoring import Report, SetTargets, align, normalize, report
from service.test_sets.store import config_of, get_test_set, load_targets

SCORED = ("scored", "improved", "unchanged")


@dataclass(frozen=True)
class ScoreOutcome:
    test_set: TestSet
    mode: str
    outcome: str
    metrics: dict[str, float | None]
    intervals: dict[str, dict[str, Any]]
    budget_remaining: int | None
    slices: dict[str, Any] | None = None
    """Open mode only: slices of at least HELDOUT_MIN_SLICE_SIZE, smaller groups pooled as ``other``."""
    worst_slice: dict[str, Any] | None = None


def set_targets(db: Database, row: TestSet) -> SetTargets:
    stored = load_targets(db, row)
    return SetTargets(
        Task(row.task), stored.ids, stored.targets, row.labels, row.multilabel, config_of(row), stored.groups
    )


def released_slices(scored: Report) -> dict[str, Any]:
    """Slices as an open report releases them: metrics, intervals and support per slice, and the worst one."""
    if scored.slices is None:
        return {"slices": None, "worst_slice": None}
    return {
        "slices": {
            name: {
                "metrics": dict(part.metrics),
                "intervals": {n: {"low": i.low, "high": i.high, "level": i.level} for n, i in part.intervals.items()},
                "support": part.support,
            }
            for name, part in scored.slices.items()
        },
        "worst_slice": None if scored.worst_slice is None else dataclasses.asdict(scored.worst_slice),
    }


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _lock_state(session: Session, test_set_id: int, key_id: str) -> ScoringState:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(ScoringState)
        .values(test_set_id=test_set_id, key_id=key_id, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(ScoringState)
        .where(ScoringState.test_set_id == test_set_id, ScoringState.key_id == key_id)
        .with_for_update()
    ).one()


def _used_today(session: Session, test_set_id: int, key_id: str, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                ScoringSubmission.test_set_id == test_set_id,
                ScoringSubmission.key_id == key_id,
                ScoringSubmission.created_at >= _day_start(now),
                ScoringSubmission.outcome.in_(SCORED),
            )
        )
        or 0
    )


def _open_release(scored: Report) -> dict[str, Any]:
    return {
        "metrics": dict(scored.metrics),
        "intervals": {n: {"low": i.low, "high": i.high, "level": i.level} for n, i in scored.intervals.items()},
        **released_slices(scored),
    }


def _encode(predictions: list[Any]) -> bytes:
    return zlib.compress(json.dumps(predictions).encode("utf-8"))


def _decode(blob: bytes) -> list[Any]:
    return list(json.loads(zlib.decompress(blob)))


def _ladder_release(
    state: ScoringState,
    target: SetTargets,
    predictions: list[Any],
    scored: Report,
    n_resamples: int,
    workers: int | None,
) -> tuple[str, dict[str, Any]]:
    config = target.config
    metric = config.ladder_metric
    candidate = scored.metrics[metric]
    improved = state.best_predictions is None
    if not improved and state.best_predictions is not None:
        best = _decode(state.best_predictions)
        paired = compare(target, best, predictions, metrics=[metric], n_resamples=n_resamples, workers=workers)
        best_score = math.nan if state.best_score is None else state.best_score
        improved = ladder.decide(metric, candidate, best_score, paired[metric].p_value, config.ladder_alpha).improved
    if improved:
        state.best_score = candidate
        state.best_report = ladder.rounded(scored.metrics, scored.intervals, config)
        state.best_predictions = _encode(predictions)
        state.updated_at = utcnow()
    assert state.best_report is not None
    return ("improved" if improved else "unchanged"), state.best_report


def submit(
    db: Database, settings: Settings, test_set_id: int, key_id: str, predictions: dict[str, Any], full_report: bool
) -> ScoreOutcome:
    """Score ``predictions`` ({id: prediction}) for ``key_id``; BudgetExhausted once the key's daily budget is spent.

    In ladder mode only the ladder metric is released unless ``full_report`` (admin keys), and never slices.
    """
    n_resamples, workers = min(settings.scoring_resamples, settings.max_resamples), settings.metric_workers
    with db.session() as session:
        row = get_test_set(session, test_set_id)
    config: SetConfig = config_of(row)
    if config.daily_budget is not None:
        with db.session() as session:
            if _used_today(session, test_set_id, key_id, utcnow()) >= config.daily_budget:
                _refuse(db, row, key_id)
    target = set_targets(db, row)
    normalized = normalize(align(target.ids, predictions), target)
    min_slice_size = None if config.ladder else settings.min_slice_size
    scored = report(normalized, target, n_resamples=n_resamples, workers=workers, min_slice_size=min_slice_size)

    with db.session() as session:
        state = _lock_state(session, test_set_id, key_id)
        now = utcnow()
        used = _used_today(session, test_set_id, key_id, now)
        over = config.daily_budget is not None and used >= config.daily_budget
        if not over:
            if config.ladder:
                outcome, best = _ladder_release(state, target, normalized, scored, n_resamples, workers)
                release = best if full_report else ladder.released(best, config.ladder_metric)
            else:
                outcome, release = "scored", _open_release(scored)
            reported = release["metrics"].get(config.ladder_metric)
            session.add(
                ScoringSubmission(
                    test_set_id=test_set_id, key_id=key_id, created_at=now, outcome=outcome, reported_score=reported
                )
            )
    if over:
        _refuse(db, row, key_id)
    count_submission(row.name, outcome)
    remaining = None if config.daily_budget is None else config.daily_budget - used - 1
    return ScoreOutcome(
        row,
        config.mode,
        outcome,
        release["metrics"],
        release["intervals"],
        remaining,
        release.get("slices"),
        release.get("worst_slice"),
    )


def _refuse(db: Database, row: TestSet, key_id: str) -> None:
    now = utcnow()
    with db.session() as session:
        session.add(ScoringSubmission(test_set_id=row.id, key_id=key_id, created_at=now, outcome="over_budget"))
    count_submission(row.name, "over_budget")
    retry = math.ceil((_day_start(now) + timedelta(days=1) - now).total_seconds())
    raise BudgetExhausted(
        f"this key's daily budget of {row.settings['daily_budget']} scored submissions for test set {row.id} is spent; "
        "it renews at 00:00 UTC",
        retry_after_s=max(1, retry),
    )
