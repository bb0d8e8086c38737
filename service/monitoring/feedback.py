"""Delayed ground truth: joined to logged predictions, stored, and reduced to online scores.

A batch is all or nothing: if any prediction id is unknown, or a label cannot apply, nothing is stored
and the refusal names every offending item (up to a limit).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitors.online_accuracy import OnlineScores, OnlineWindow, online_scores
from service.db.models import Feedback, PredictionLogEntry, utcnow
from service.db.session import Database
from service.domain_errors import FieldProblem
from service.monitoring.errors import FeedbackRejected
from service.monitoring.window import ID_CHUNK

# Offending items named in one refusal, so the answer stays readable for a 10,000-item batch.
MAX_NAMED = 20


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str
    label: str


@dataclass(frozen=True)
class _Logged:
    model: str
    label: str | None


def _lookup(session: Session, ids: Sequence[str]) -> dict[str, _Logged]:
    found: dict[str, _Logged] = {}
    for start in range(0, len(ids), ID_CHUNK):
        query = select(PredictionLogEntry.id, PredictionLogEntry.model, PredictionLogEntry.label).where(
            PredictionLogEntry.id.in_(ids[start : start + ID_CHUNK])
        )
        found.update({pid: _Logged(model, label) for pid, model, label in session.execute(query)})
    return found


def _reject(problems: list[tuple[int, str, str]], summary: str) -> FeedbackRejected:
    named = [FieldProblem(f"items.{i}.{field}", message) for i, field, message in problems[:MAX_NAMED]]
    more = f" (and {len(problems) - MAX_NAMED} more)" if len(problems) > MAX_NAMED else ""
    return FeedbackRejected(f"{summary}: {', '.join(p.message for p in named)}{more}", problems=named)


def _upsert(session: Session, rows: list[dict[str, object]]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for start in range(0, len(rows), ID_CHUNK):
        statement = insert(Feedback).values(rows[start : start + ID_CHUNK])
        excluded = statement.excluded
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[Feedback.prediction_id],
                set_={"label": excluded.label, "received_at": excluded.received_at, "created_by": excluded.created_by},
            )
        )


def record_feedback(
    db: Database,
    items: Sequence[FeedbackItem],
    created_by: str,
    labels_of: Callable[[str], Sequence[str] | None],
    flush_log: Callable[[], None] | None,
) -> dict[str, int]:
    """Store the batch; returns accepted items per model. ``labels_of(model)`` is the served model's label set."""
    ids = [item.prediction_id for item in items]
    with db.session() as session:
        logged = _lookup(session, ids)
    if len(logged) < len(ids) and flush_log is not None:
        # Predictions served a moment ago may still sit in the log's buffer.
        flush_log()
        with db.session() as session:
            logged.update(_lookup(session, [i for i in ids if i not in logged]))
    unknown = [
        (i, "prediction_id", item.prediction_id) for i, item in enumerate(items) if item.prediction_id not in logged
    ]
    if unknown:
        raise _reject(unknown, f"{len(unknown)} unknown prediction id(s)")
    problems = []
    for i, item in enumerate(items):
        entry = logged[item.prediction_id]
        allowed = labels_of(entry.model)
        if entry.label is None:
            problems.append((i, "prediction_id", f"{item.prediction_id} has no single predicted label"))
        elif allowed is not None and item.label not in allowed:
            problems.append((i, "label", f"{item.label!r} is not a label of {entry.model}"))
    if problems:
        raise _reject(problems, "feedback that cannot be scored")
    now = utcnow()
    rows: list[dict[str, object]] = [
        {
            "prediction_id": item.prediction_id,
            "model": logged[item.prediction_id].model,
            "predicted": logged[item.prediction_id].label,
            "label": item.label,
            "received_at": now,
            "created_by": created_by,
        }
        for item in items
    ]
    with db.session() as session:
        _upsert(session, rows)
    accepted: dict[str, int] = {}
    for row in rows:
        model = str(row["model"])
        accepted[model] = accepted.get(model, 0) + 1
    return accepted


def _window_query(model: str, window: OnlineWindow, now: datetime) -> "Select[str, str]":
    recent = select(Feedback.predicted, Feedback.label).where(Feedback.model == model)
    if window.span is not None:
        recent = recent.where(Feedback.received_at >= now - window.span)
    else:
        recent = recent.order_by(Feedback.received_at.desc(), Feedback.prediction_id.desc()).limit(window.size)
    return recent


def window_scores(db: Database, model: str, window: OnlineWindow) -> OnlineScores | None:
    inner = _window_query(model, window, utcnow()).subquery()
    query = select(inner.c.predicted, inner.c.label, func.count()).group_by(inner.c.predicted, inner.c.label)
    with db.session() as session:
        pairs = {(predicted, label): int(n) for predicted, label, n in session.execute(query)}
    return online_scores(pairs)


def models_with_feedback(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Feedback.model).distinct()))
