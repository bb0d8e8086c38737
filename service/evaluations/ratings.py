"""Human ratings of a generation evaluation's outputs: pages of outputs for raters, and rating posts.

Raters see each record's id, source and the model's output, never its references. A post is checked
against the set (known ids, the set's rating scale) before anything is written; then one transaction
upserts the ratings and rewrites the evaluation's summary from all of its ratings. The upsert comes
first and the evaluation row is locked before the ratings are read, so concurrent posts serialise
and the last summary written covers every rating (on SQLite the first write takes the database lock).
"""

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from metrics.human import rating_summary
from monitors.evaluation_gauges import publish_human_ratings
from service.db.models import Evaluation, EvaluationRating, EvaluationShard, TestRecord, TestSet, utcnow
from service.db.session import Database
from service.domain_errors import FieldProblem
from service.evaluations import job_store
from service.evaluations.errors import NotRateable, RatingsInvalid
from service.evaluations.telemetry import latest_human_ratings
from service.tasks import Task
from service.test_sets.scoring import CONFIDENCE_LEVEL, MAX_NAMED_IDS, SEED
from service.test_sets.store import config_of

# Bytes of ids, sources and outputs in one page of outputs; a page holds at least one record.
OUTPUTS_PAGE_BYTES = 8 * 1024 * 1024
# Record ids looked up, and ratings written, per statement.
BATCH = 500


@dataclass(frozen=True)
class OutputPage:
    items: list[tuple[str, str, str]]
    """(id, source, output) in set order."""
    next_cursor: int | None
    total: int


@dataclass(frozen=True)
class Rating:
    id: str
    rater: str
    rating: float


def _rateable(db: Database, evaluation_id: int) -> tuple[Evaluation, TestSet]:
    job = job_store.get(db, evaluation_id)
    if job.task != Task.generation.value:
        raise NotRateable(f"evaluation {job.id} is a {job.task} evaluation; outputs and ratings are for generation")
    if job.status != "succeeded":
        raise NotRateable(f"evaluation {job.id} is {job.status}; its outputs can be read and rated once it succeeds")
    with db.session() as session:
        test_set = session.get(TestSet, job.test_set_id)
    if test_set is None or test_set.deleted_at is not None:
        raise NotRateable(f"the test set of evaluation {job.id} was deleted, and its records with it")
    return job, test_set


def _outputs(session: Session, evaluation_id: int, start: int, stop: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for shard_start, output in session.execute(
        select(EvaluationShard.start, EvaluationShard.output)
        .where(
            EvaluationShard.evaluation_id == evaluation_id,
            EvaluationShard.start < stop,
            EvaluationShard.stop > start,
        )
        .order_by(EvaluationShard.idx)
    ):
        for offset, text in enumerate(output or []):
            if start <= shard_start + offset < stop:
                found[shard_start + offset] = text
    return found


def outputs_page(db: Database, evaluation_id: int, cursor: int, limit: int) -> OutputPage:
    """Ids, sources and outputs from position ``cursor`` on; a page also stops at OUTPUTS_PAGE_BYTES."""
    job, test_set = _rateable(db, evaluation_id)
    items: list[tuple[str, str, str]] = []
    size = 0
    with db.session() as session:
        outputs = _outputs(session, job.id, cursor, cursor + limit)
        rows = session.execute(
            select(TestRecord.position, TestRecord.record_id, TestRecord.input)
            .where(
                TestRecord.test_set_id == test_set.id,
                TestRecord.position >= cursor,
                TestRecord.position < cursor + limit,
            )
            .order_by(TestRecord.position)
            .execution_options(yield_per=100)
        )
        for position, record_id, source in rows:
            output = str(outputs.get(position, ""))
            size += len(record_id) + len(source.encode("utf-8")) + len(output.encode("utf-8"))
            if items and size > OUTPUTS_PAGE_BYTES:
                rows.close()
                return OutputPage(items, int(position), test_set.size)
            items.append((record_id, source, output))
    end = cursor + len(items)
    return OutputPage(items, end if items and end < test_set.size else None, test_set.size)


def _batches(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), BATCH):
        yield values[start : start + BATCH]


def _positions(db: Database, test_set_id: int, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    with db.session() as session:
        for batch in _batches(ids):
            rows = session.execute(
                select(TestRecord.record_id, TestRecord.position).where(
                    TestRecord.test_set_id == test_set_id, TestRecord.record_id.in_(batch)
                )
            )
            found.update((record_id, position) for record_id, position in rows)
    return found


def _named(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_NAMED_IDS])
    return shown + (f" and {len(ids) - MAX_NAMED_IDS} more" if len(ids) > MAX_NAMED_IDS else "")


def _checked(items: Sequence[Rating], positions: dict[str, int], scale: tuple[float, float]) -> list[dict[str, Any]]:
    """One row per (record, rater), the last rating of each; or every problem at once."""
    unknown = list(dict.fromkeys(item.id for item in items if item.id not in positions))
    low, high = scale
    outside = list(dict.fromkeys(item.id for item in items if not low <= item.rating <= high))
    problems = []
    if unknown:
        problems.append(FieldProblem("items", f"unknown ids: {_named(unknown)}"))
    if outside:
        message = f"ratings outside the set's scale [{low:g}, {high:g}] for ids {_named(outside)}"
        problems.append(FieldProblem("items", message))
    if problems:
        raise RatingsInvalid("; ".join(p.message for p in problems), problems=problems)
    rows = {(positions[item.id], item.rater): item.rating for item in items}
    return [{"position": position, "rater": rater, "rating": rating} for (position, rater), rating in rows.items()]


def summary_json(session: Session, evaluation_id: int, n_resamples: int) -> dict[str, Any]:
    rows = session.execute(
        select(EvaluationRating.position, EvaluationRating.rater, EvaluationRating.rating).where(
            EvaluationRating.evaluation_id == evaluation_id
        )
    ).all()
    items, raters, ratings = (np.array(column) for column in zip(*rows, strict=True))
    summary = rating_summary(
        items.astype(np.int64),
        raters,
        ratings.astype(np.float64),
        n_resamples=n_resamples,
        seed=SEED,
        level=CONFIDENCE_LEVEL,
    )
    interval = summary.interval
    return {**asdict(summary), "interval": {"low": interval.low, "high": interval.high, "level": interval.level}}


def _upsert(session: Session, evaluation_id: int, rows: list[dict[str, Any]], created_by: str) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    for batch in _batches(rows):
        statement = dialect.insert(EvaluationRating).values(
            [{**row, "evaluation_id": evaluation_id, "rated_at": now, "created_by": created_by} for row in batch]
        )
        excluded = statement.excluded
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["evaluation_id", "position", "rater"],
                set_={"rating": excluded.rating, "rated_at": excluded.rated_at, "created_by": excluded.created_by},
            )
        )


def rate(
    db: Database, evaluation_id: int, items: Sequence[Rating], *, created_by: str, n_resamples: int
) -> Evaluation:
    """Store the ratings (a rater's new rating of an item replaces the old) and the evaluation's new summary."""
    job, test_set = _rateable(db, evaluation_id)
    positions = _positions(db, test_set.id, list(dict.fromkeys(item.id for item in items)))
    rows = _checked(items, positions, config_of(test_set).ratings)
    with db.session() as session:
        _upsert(session, job.id, rows, created_by)
        session.execute(select(Evaluation.id).where(Evaluation.id == job.id).with_for_update())
        human = summary_json(session, job.id, n_resamples)
        session.execute(update(Evaluation).where(Evaluation.id == job.id).values(human=human))
    publish_human_ratings(latest_human_ratings(db))
    return job_store.get(db, evaluation_id)
