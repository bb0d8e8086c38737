"""The prediction log (buffered, batched, never blocking) and graceful shutdown of the serving engine."""

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from service.db.migrate import migrate
from service.db.models import PredictionLogEntry
from service.db.session import Database
from service.inference.classifier import Classifier
from service.inference.prediction_log import PredictionLog, PredictionRecord
from service.inference.startup import build_engine
from service.settings import Settings
from tests.conftest import auth
from tests.inference_fixtures import prediction_record
from tests.tiny_models import CLASSIFIER_LABELS, SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]



def dropped() -> float:
    return REGISTRY.get_sample_value("heldout_prediction_log_dropped_total") or 0.0


def test_records_are_written_in_batches_by_the_flush_thread() -> None:
    batches: list[list[str]] = []
    written = threading.Event()

    def sink(records: Sequence[PredictionRecord]) -> None:
        batches.append([r.id for r in records])
        if sum(map(len, batches)) == 7:
            written.set()

    log = PredictionLog(sink, batch_size=3, flush_interval_s=0.05)
    log.start()
    log.record([prediction_record(i) for i in range(7)])
    assert written.wait(5)
    log.close()
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [i for b in batches for i in b] == [f"id-{i}" for i in range(7)]


def test_flush_waits_for_a_batch_the_flush_thread_is_writing() -> None:
    """Feedback flushes and then looks ids up: a batch mid-write on the flush thread must be in the store
    before ``flush`` returns, though the buffer is already empty."""
    entered, release = threading.Event(), threading.Event()
    stored: list[str] = []

    def sink(records: Sequence[PredictionRecord]) -> None:
        entered.set()
        release.wait(5)
        stored.extend(r.id for r in records)

    log = PredictionLog(sink, batch_size=10, flush_interval_s=0.01)
    log.start()
    log.record([prediction_record(1)])
    assert entered.wait(5)
    flushed = threading.Thread(target=log.flush)
    flushed.start()
    flushed.join(0.3)
    assert flushed.is_alive(), "flush returned while the record was still being written"
    release.set()
    flushed.join(5)
    assert not flushed.is_alive() and stored == ["id-1"]
    log.close()


def test_record_never_waits_for_a_slow_store_and_drops_past_the_buffer() -> None:
    def slow_sink(records: Sequence[PredictionRecord]) -> None:
        time.sleep(0.3)

    dropped_before = dropped()
    log = PredictionLog(slow_sink, batch_size=2, flush_interval_s=0.01, max_buffered=4)
    log.start()
    started = time.perf_counter()
    for i in range(20):
        log.record([prediction_record(i)])
    assert time.perf_counter() - started < 0.1
    log.close(timeout_s=0)
    assert dropped() - dropped_before >= 20 - 4 - 2


def test_a_failing_store_loses_records_without_raising() -> None:
    def broken(records: Sequence[PredictionRecord]) -> None:
        raise ConnectionError("database down")

    dropped_before = dropped()
    log = PredictionLog(broken, batch_size=10)
    log.record([prediction_record(1)])
    log.flush()
    assert dropped() - dropped_before == 1


def test_served_predictions_land_in_the_database(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    with serve(classifier_dir, database_url=database_url) as client:
        response = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": SENTENCES[:3]})
    assert response.status_code == 200, response.text
    predictions = {p["id"]: p for p in response.json()["predictions"]}
    db = Database(database_url)
    with db.session() as session:
        rows = session.scalars(select(PredictionLogEntry).where(PredictionLogEntry.id.in_(predictions))).all()
    db.dispose()
    assert len(rows) == 3
    for row in rows:
        served = predictions[row.id]
        assert (row.model, row.task, row.label) == ("tiny-sentiment", "sequence-classification", served["label"])
        assert row.score == pytest.approx(served["score"])
        assert row.input_text in SENTENCES and row.features["n_chars"] == len(row.input_text)
        assert row.features["truncated"] is False and row.features["n_tokens"] > 2
        assert len(row.model_version) == 64 and row.created_at is not None


def test_shutdown_finishes_in_flight_requests(
    classifier_dir: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(model_path=classifier_dir, max_batch_size=2, max_batch_delay_ms=0)
    db = Database(settings.resolved_database_url)
    migrate(db, settings.data_dir)
    engine = build_engine(settings, db)
    original = Classifier.__call__
    monkeypatch.setattr(Classifier, "__call__", lambda self, texts: (time.sleep(0.1), original(self, texts))[1])

    async def scenario() -> list[str]:
        await engine.start()
        pending = [asyncio.ensure_future(engine.classify([text])) for text in SENTENCES[:6]]
        await asyncio.sleep(0.05)
        await engine.aclose()
        assert not engine.ready
        return [str(p.result().outputs[0].label) for p in pending]

    labels = asyncio.run(scenario())
    db.dispose()
    assert len(labels) == 6 and set(labels) <= set(CLASSIFIER_LABELS)
