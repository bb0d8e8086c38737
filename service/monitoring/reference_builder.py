"""Builds a drift reference from a test set (through the served classifier) or a window of logged traffic."""

import asyncio
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from monitors.drift_config import ALL_COLUMNS
from monitors.drift_features import FeatureTable
from service.db.models import DriftReference
from service.db.session import Database
from service.inference.engine import InferenceEngine
from service.monitoring.errors import NoDriftFeatures, ReferenceNeedsClassifier, ReferenceNeedsModel, TooFewRows
from service.monitoring.references import fit_projection, store_reference, table_from_outputs, test_set_inputs
from service.monitoring.times import as_utc
from service.monitoring.window import Window, count_rows, read_window
from service.settings import Settings

TEXT_SEED = 0


def _too_few(n: int, what: str, settings: Settings) -> TooFewRows:
    return TooFewRows(
        f"{what} has {n} predictions; a reference needs HELDOUT_DRIFT_MIN_ROWS ({settings.drift_min_rows})"
    )


async def from_test_set(
    db: Database, settings: Settings, engine: InferenceEngine | None, test_set_id: int, created_by: str
) -> DriftReference:
    if engine is None:
        raise ReferenceNeedsModel("a reference from a test set needs a served model: set HELDOUT_MODEL_PATH")
    if not engine.loaded.task.classifies:
        raise ReferenceNeedsClassifier(f"model {engine.loaded.name} is a {engine.loaded.task} model, not a classifier")

    def read() -> tuple[str, list[str]]:
        with db.session() as session:
            return test_set_inputs(session, test_set_id, settings.drift_reference_rows)

    name, texts = await asyncio.to_thread(read)
    if len(texts) < settings.drift_min_rows:
        raise _too_few(len(texts), f"test set {test_set_id}", settings)
    outputs = []
    for start in range(0, len(texts), settings.max_inputs):
        outputs.extend((await engine.classify(texts[start : start + settings.max_inputs], record=False)).outputs)
    table = table_from_outputs(texts, outputs)
    source = {"test_set": test_set_id, "name": name}
    return await asyncio.to_thread(_store, db, settings, engine.loaded.name, source, table, created_by)


async def from_window(
    db: Database, settings: Settings, model: str, start: datetime, end: datetime, created_by: str
) -> DriftReference:
    window = Window(model, as_utc(start), as_utc(end))

    def read() -> FeatureTable:
        with db.session() as session:
            n = count_rows(session, window)
            if n < settings.drift_min_rows:
                raise _too_few(n, f"the window of {model} from {window.start} to {window.end}", settings)
            rows, texts = settings.drift_reference_rows, settings.drift_text_sample
            return read_window(session, window, rows, texts, rows, TEXT_SEED, spread=True)

    table = await asyncio.to_thread(read)
    source = {"from": window.start.isoformat(), "to": window.end.isoformat()}
    return await asyncio.to_thread(_store, db, settings, model, source, table, created_by)


def _keep_sample_of_texts(table: FeatureTable, size: int) -> None:
    """Checks use at most HELDOUT_DRIFT_TEXT_SAMPLE texts per side, so a reference stores no more."""
    present = [i for i, text in enumerate(table.text) if text is not None]
    if len(present) > size:
        keep = set(np.random.default_rng(TEXT_SEED).choice(present, size, replace=False).tolist())
        table.text = [text if i in keep else None for i, text in enumerate(table.text)]


def _store(
    db: Database, settings: Settings, model: str, source: Mapping[str, object], table: FeatureTable, created_by: str
) -> DriftReference:
    if not any(table.present(column) for column in ALL_COLUMNS):
        raise NoDriftFeatures(f"the {len(table)} predictions carry no feature a drift check can compare")
    _keep_sample_of_texts(table, settings.drift_text_sample)
    projection = fit_projection(table, settings.drift_embedding_components)
    return store_reference(db, model, dict(source), table, projection, created_by)
