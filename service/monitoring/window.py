"""Reads a window of the prediction log as drift features.

Features come first for every row; texts only for the rows the text drift will sample, so a window of
long documents costs no more memory than one of short sentences.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session

from monitors.drift_features import MAX_TEXT_CHARS, FeatureTable, LoggedPrediction
from service.db.models import PredictionLogEntry

ID_CHUNK = 500


@dataclass(frozen=True)
class Window:
    model: str
    start: datetime
    end: datetime
    """Exclusive."""


def _in_window(window: Window) -> tuple[ColumnElement[bool], ...]:
    return (
        PredictionLogEntry.model == window.model,
        PredictionLogEntry.created_at >= window.start,
        PredictionLogEntry.created_at < window.end,
    )


def count_rows(session: Session, window: Window) -> int:
    return int(session.scalar(select(func.count()).select_from(PredictionLogEntry).where(*_in_window(window))) or 0)


def _texts(session: Session, ids: Sequence[str]) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        query = select(PredictionLogEntry.id, func.substr(PredictionLogEntry.input_text, 1, MAX_TEXT_CHARS)).where(
            PredictionLogEntry.id.in_(chunk)
        )
        texts.update({pid: text for pid, text in session.execute(query)})
    return texts


_FEATURE_COLUMNS = (
    PredictionLogEntry.id,
    PredictionLogEntry.features,
    PredictionLogEntry.label,
    PredictionLogEntry.score,
)


def _newest(
    session: Session, window: Window, max_rows: int
) -> list[Row[tuple[str, dict[str, Any], str | None, float | None]]]:
    query = (
        select(*_FEATURE_COLUMNS)
        .where(*_in_window(window))
        .order_by(PredictionLogEntry.created_at.desc(), PredictionLogEntry.id)
        .limit(max_rows)
    )
    return list(reversed(session.execute(query).all()))


def _spread(
    session: Session, window: Window, max_rows: int
) -> list[Row[tuple[str, dict[str, Any], str | None, float | None]]]:
    query = (
        select(PredictionLogEntry.id)
        .where(*_in_window(window))
        .order_by(PredictionLogEntry.created_at, PredictionLogEntry.id)
    )
    ids = list(session.scalars(query))
    if len(ids) > max_rows:
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, max_rows).round().astype(int)]
    rows = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = select(*_FEATURE_COLUMNS).where(PredictionLogEntry.id.in_(ids[start : start + ID_CHUNK]))
        rows.update({row.id: row for row in session.execute(chunk)})
    return [rows[i] for i in ids if i in rows]


def read_window(
    session: Session, window: Window, max_rows: int, text_rows: int, seed: int, *, spread: bool = False
) -> FeatureTable:
    """At most ``max_rows`` predictions of the window: the newest, or evenly spread over it when ``spread``.

    Texts are read for a seeded sample of ``text_rows`` of them only.
    """
    rows = _spread(session, window, max_rows) if spread else _newest(session, window, max_rows)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), text_rows, replace=False).tolist() if len(rows) > text_rows else range(len(rows))
    texts = _texts(session, [rows[i].id for i in picked])
    return FeatureTable.from_predictions(LoggedPrediction(r.features, r.label, r.score, texts.get(r.id)) for r in rows)
