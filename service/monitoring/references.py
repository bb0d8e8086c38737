"""Drift references: frozen, versioned copies of the features a check compares against.

A reference keeps its own rows (not pointers into the prediction log or a test set), so retention and
test-set deletion never change what an old check compared against. The embedding projection is fitted
here, once, and stored with it.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitors.drift_config import ALL_COLUMNS
from monitors.drift_features import FeatureTable, LoggedPrediction, classifier_log_features
from monitors.projection import Projection
from service.db.models import DriftReference, TestRecord, TestSet
from service.db.session import Database
from service.inference.classifier import ClassOutput
from service.monitoring.errors import ReferenceNotFound
from service.monitoring.window import ID_CHUNK
from service.test_sets.errors import TestSetNotFound

VERSION_ATTEMPTS = 5


def test_set_inputs(session: Session, test_set_id: int, max_rows: int) -> tuple[str, list[str]]:
    """(test set name, inputs evenly spread over the set); TestSetNotFound for a missing or deleted set."""
    row = session.get(TestSet, test_set_id)
    if row is None or row.deleted_at is not None or row.version is None:
        raise TestSetNotFound(f"test set {test_set_id} does not exist")
    of_set = TestRecord.test_set_id == test_set_id
    positions = list(session.scalars(select(TestRecord.position).where(of_set).order_by(TestRecord.position)))
    if len(positions) > max_rows:
        positions = [positions[i] for i in np.linspace(0, len(positions) - 1, max_rows).round().astype(int)]
    inputs: dict[int, str] = {}
    for start in range(0, len(positions), ID_CHUNK):
        chunk = positions[start : start + ID_CHUNK]
        query = select(TestRecord.position, TestRecord.input).where(of_set, TestRecord.position.in_(chunk))
        inputs.update({pos: text for pos, text in session.execute(query)})
    return row.name, [inputs[p] for p in positions]


def table_from_outputs(texts: Sequence[str], outputs: Sequence[ClassOutput]) -> FeatureTable:
    """The features the prediction log would hold had these texts been served."""
    predictions = []
    for text, out in zip(texts, outputs, strict=True):
        single = isinstance(out.label, str) and isinstance(out.score, float)
        predictions.append(
            LoggedPrediction(
                classifier_log_features(len(text), out.n_tokens, out.n_unknown, out.truncated, out.embedding),
                out.label if single and isinstance(out.label, str) else None,
                out.score if single and isinstance(out.score, float) else None,
                text,
            )
        )
    return FeatureTable.from_predictions(predictions)


def fit_projection(table: FeatureTable, n_components: int) -> Projection | None:
    sketches = table.sketches()
    if len(sketches) <= n_components:
        return None
    return Projection.fit(sketches, n_components)


def store_reference(
    db: Database,
    model: str,
    source: dict[str, Any],
    table: FeatureTable,
    projection: Projection | None,
    created_by: str,
) -> DriftReference:
    """Stored as the model's next version; concurrent creations retry on the (model, version) constraint."""
    data = table.to_bytes()
    columns = [c for c in ALL_COLUMNS if table.present(c) and (c != "embedding" or projection is not None)]
    for attempt in range(VERSION_ATTEMPTS):
        try:
            with db.session() as session:
                latest = session.scalar(select(func.max(DriftReference.version)).where(DriftReference.model == model))
                row = DriftReference(
                    model=model,
                    version=(latest or 0) + 1,
                    source=source,
                    rows=len(table),
                    columns=columns,
                    projection=projection.to_json() if projection is not None else None,
                    data=data,
                    created_by=created_by,
                )
                session.add(row)
            return row
        except IntegrityError:
            if attempt == VERSION_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def get_reference(session: Session, reference_id: int) -> DriftReference:
    row = session.get(DriftReference, reference_id)
    if row is None:
        raise ReferenceNotFound(f"drift reference {reference_id} does not exist")
    return row


def read_reference(db: Database, reference_id: int) -> DriftReference:
    with db.session() as session:
        return get_reference(session, reference_id)


def latest_reference(session: Session, model: str | None) -> DriftReference | None:
    """The newest reference of ``model``, or of any model when None."""
    query = select(DriftReference).order_by(DriftReference.created_at.desc(), DriftReference.id.desc()).limit(1)
    if model is not None:
        query = query.where(DriftReference.model == model)
    return session.scalars(query).first()


def list_references(db: Database, model: str | None, limit: int, offset: int) -> tuple[list[DriftReference], int]:
    query = select(DriftReference)
    count = select(func.count()).select_from(DriftReference)
    if model is not None:
        query = query.where(DriftReference.model == model)
        count = count.where(DriftReference.model == model)
    with db.session() as session:
        rows = session.scalars(query.order_by(DriftReference.id.desc()).limit(limit).offset(offset)).all()
        return list(rows), int(session.scalar(count) or 0)
