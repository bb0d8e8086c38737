"""Reads a window of the prediction log as drift features.

Features come first for every row; texts only for the rows the text drift will sample, so a window of
long documents costs no more memory than one of short sentences.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, select
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


def in_window(window: Window) -> tuple[ColumnElement[bool], ...]:
    return (
        PredictionLogEntry.model == window.model,
        PredictionLogEntry.created_at >= window.start,
        PredictionLogEntry.created_at < window.end,
    )


def count_rows(session: Session, window: Window) -> int:
    return int(session.scalar(select(func.count()).select_from(PredictionLogEntry).where(*in_window(window))) or 0)


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
# Read by the database's own JSON functions, so a 100,000-row window costs no JSON parsing here.
_SCALARS = ("n_chars", "n_tokens", "unk_share")

Logged = tuple[str, dict[str, Any], str | None, float | None]
"""(id, features, label, score)."""


def _newest(session: Session, window: Window, max_rows: int) -> tuple[list[str], FeatureTable]:
    """Scalar features only, built column by column; embeddings are read for the sampled rows alone."""
    scalars = [PredictionLogEntry.features[name].as_float() for name in _SCALARS]
    query = (
        select(PredictionLogEntry.id, PredictionLogEntry.label, PredictionLogEntry.score, *scalars)
        .where(*in_window(window))
        .order_by(PredictionLogEntry.created_at.desc(), PredictionLogEntry.id)
        .limit(max_rows)
    )
    rows = list(reversed(session.execute(query).all()))
    columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 6
    ids, labels, scores, n_chars, n_tokens, unk_share = columns
    table = FeatureTable(n_chars, n_tokens, unk_share, scores, labels, [None] * len(ids), [None] * len(ids))
    return ids, table


def _spread(session: Session, window: Window, max_rows: int) -> list[Logged]:
    """Every feature, embeddings included: a reference fits its projection on them."""
    query = (
        select(PredictionLogEntry.id)
        .where(*in_window(window))
        .order_by(PredictionLogEntry.created_at, PredictionLogEntry.id)
    )
    ids = list(session.scalars(query))
    if len(ids) > max_rows:
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, max_rows).round().astype(int)]
    rows: dict[str, Logged] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = select(*_FEATURE_COLUMNS).where(PredictionLogEntry.id.in_(ids[start : start + ID_CHUNK]))
        rows.update({r.id: (r.id, r.features, r.label, r.score) for r in session.execute(chunk)})
    return [rows[i] for i in ids if i in rows]


def _embeddings(session: Session, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(ids), ID_CHUNK):
        query = select(PredictionLogEntry.id, PredictionLogEntry.features["embedding"]).where(
            PredictionLogEntry.id.in_(ids[start : start + ID_CHUNK])
        )
        found.update({pid: embedding for pid, embedding in session.execute(query) if embedding is not None})
    return found


def _sample(rng: np.random.Generator, n: int, size: int) -> list[int]:
    return sorted(rng.choice(n, size, replace=False).tolist()) if n > size else list(range(n))


def read_window(
    session: Session,
    window: Window,
    max_rows: int,
    text_rows: int,
    embedding_rows: int,
    seed: int,
    *,
    spread: bool = False,
) -> FeatureTable:
    """At most ``max_rows`` predictions of the window: the newest, or evenly spread over it when ``spread``.

    Texts are read for a seeded sample of ``text_rows`` of them, and (unless ``spread``) embeddings for a
    sample of ``embedding_rows``: the text and embedding drift methods use no more.
    """
    rng = np.random.default_rng(seed)
    if spread:
        rows = _spread(session, window, max_rows)
        texts = _texts(session, [rows[i][0] for i in _sample(rng, len(rows), text_rows)])
        return FeatureTable.from_predictions(
            LoggedPrediction(features, label, score, texts.get(pid)) for pid, features, label, score in rows
        )
    ids, table = _newest(session, window, max_rows)
    text_at = _sample(rng, len(ids), text_rows)
    texts = _texts(session, [ids[i] for i in text_at])
    for i in text_at:
        table.text[i] = texts.get(ids[i])
    embedding_at = _sample(rng, len(ids), embedding_rows)
    embeddings = _embeddings(session, [ids[i] for i in embedding_at])
    for i in embedding_at:
        sketch = embeddings.get(ids[i])
        table.sketch[i] = sketch if isinstance(sketch, list) and sketch else None
    return table
