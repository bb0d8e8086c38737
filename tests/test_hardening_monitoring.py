"""Issue #12, monitoring: drift reports cannot run logged text, no user text in logs, a bounded prediction
log, a drift-check queue cap that holds under concurrency, and 422 rather than 500 for unrepresentable times."""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from service.db.models import PredictionLogEntry
from service.db.session import Database
from service.inference.prediction_log import PredictionLog, PredictionRecord
from service.inference.prediction_log_sink import database_sink
from service.monitoring import checks
from service.monitoring.checks import MAX_PENDING, DriftChecks
from service.monitoring.drift_worker import CheckFailed, CheckJob, CheckOutput
from service.settings import Settings
from tests.conftest import auth
from tests.inference_fixtures import prediction_record
from tests.monitoring_fixtures import MODEL, insert_rows, iso, monitored_client, synthetic_rows, wait_for_check
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
EVALUATOR, READER = auth("evaluator"), auth("reader")
PAYLOAD = "</script><script>alert(document.domain)</script><img src=x onerror=alert(1)>"


def dropped() -> float:
    return REGISTRY.get_sample_value("heldout_prediction_log_dropped_total") or 0.0


def traffic_with_reference(
    client: TestClient, database_url: str, tmp_path: Path, *, text_suffix: str = ""
) -> dict[str, str]:
    """A reference from 60 rows five hours ago; 60 shifted rows in the last hour, texts ending in ``text_suffix``.
    Returns the body of a check of the last hour."""
    now = datetime.now(UTC)
    reference = synthetic_rows(60, shifted=False, seed=1, start=now - timedelta(hours=5))
    current = [
        {**row, "input_text": row["input_text"] + text_suffix}
        for row in synthetic_rows(60, shifted=True, seed=2, start=now - timedelta(minutes=30))
    ]
    insert_rows(database_url, tmp_path, reference + current)
    body = {"from": iso(now - timedelta(hours=6)), "to": iso(now - timedelta(hours=4)), "model": MODEL}
    response = client.post("/v1/drift/reference", headers=EVALUATOR, json=body)
    assert response.status_code == 201, response.text
    return {"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(minutes=1))}


# --- 1. stored XSS through the drift report ---------------------------------------------------------------


class PageParser(HTMLParser):
    """What a browser's tokenizer sees: elements with their attributes, and the text of each script."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def embedded_data(script: str) -> list[Any]:
    """The values of the ``var name = <json>;`` statements of Evidently's data script."""
    values = []
    for line in script.strip().splitlines():
        _, _, value = line.partition(" = ")
        values.append(json.loads(value.strip().removesuffix(";")))
    return values


def test_drift_report_keeps_logged_texts_as_data_and_is_served_sandboxed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'heldout.db'}"
    with monitored_client(make_settings, database_url=database_url) as client:
        last_hour = traffic_with_reference(client, database_url, tmp_path, text_suffix=f" {PAYLOAD}")
        response = client.post("/v1/drift/checks", headers=EVALUATOR, json=last_hour)
        assert response.status_code == 202, response.text
        check = wait_for_check(client, response.json()["id"])
        assert check["status"] == "succeeded" and check["window"]["rows"] == 60, check
        assert next(c for c in check["columns"] if c["column"] == "text")["drifted"]  # so it shows examples
        plain = client.get(f"/v1/drift/checks/{check['id']}/report", headers=READER)
        zipped = client.get(f"/v1/drift/checks/{check['id']}/report", headers={**READER, "Accept-Encoding": "gzip"})

    for response in (plain, zipped):
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == "sandbox allow-scripts"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert zipped.headers["content-encoding"] == "gzip" and zipped.text == plain.text
    body = plain.text
    assert PAYLOAD not in body and "<img" not in body

    page = PageParser()
    page.feed(body)
    page.close()
    handlers = [(tag, name) for tag, attrs in page.tags for name, _ in attrs if name.startswith("on")]
    assert handlers == [] and "img" not in {tag for tag, _ in page.tags}
    assert not any("alert(document.domain)" in script for script in page.scripts if "var metric_" not in script)
    data_scripts = [script for script in page.scripts if script.lstrip().startswith("var metric_")]
    assert len(data_scripts) == 1
    shown = [text for value in embedded_data(data_scripts[0]) for text in strings_in(value)]
    # The report still shows the logged texts, exactly as they were sent.
    assert any(text.endswith(f" {PAYLOAD}") for text in shown)
    assert "Drift in column 'text'" in shown


# --- 2. no user text in logs ------------------------------------------------------------------------------


def test_a_failed_flush_logs_the_error_type_and_count_but_no_input_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real database error (no table yet) whose message quotes the INSERT's parameters."""
    secret = "patient 4711 reports chest pain"
    db = Database(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    record = PredictionRecord(
        id="p1",
        model="m",
        model_version="v",
        task="sequence-classification",
        created_at=datetime.now(UTC),
        features={"n_chars": len(secret)},
        label="positive",
        score=0.9,
        output=None,
        input_text=secret,
    )
    with pytest.raises(Exception, match="chest pain"):
        database_sink(db)([record])  # the oracle: the error itself does quote the text

    before = dropped()
    log = PredictionLog(database_sink(db))
    with caplog.at_level(logging.DEBUG):
        log.record([record])
        log.flush()
    db.dispose()

    assert dropped() - before == 1
    assert [r.getMessage() for r in caplog.records] == [
        "dropped 1 prediction log records: the store failed (OperationalError)"
    ]
    for entry in caplog.records:
        assert secret not in entry.getMessage() and secret not in repr(entry.args)
        assert entry.exc_info is None and entry.exc_text is None
    assert secret not in caplog.text


# --- 3. bounded storage in the prediction log -------------------------------------------------------------


def test_the_prediction_log_stores_a_bounded_prefix_but_counts_the_whole_text(
    serve: ServeFactory, classifier_dir: Path, tmp_path: Path
) -> None:
    long_text = " ".join(SENTENCES * 200)
    assert len(long_text) > 10_000
    with serve(classifier_dir, log_text_chars=100) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": [long_text, SENTENCES[0]]})
        assert response.status_code == 200, response.text
        database_url = client.app.state.settings.resolved_database_url  # type: ignore[attr-defined]
    db = Database(database_url)
    with db.session() as session:
        rows = {row.features["n_chars"]: row.input_text for row in session.scalars(select(PredictionLogEntry))}
    db.dispose()
    assert rows == {len(long_text): long_text[:100], len(SENTENCES[0]): SENTENCES[0]}



def test_the_buffer_is_bounded_in_bytes_dropping_and_counting_the_oldest() -> None:
    """Ten records of 100,000 characters each; 350,000 bytes hold three of them, not four."""
    written: list[str] = []
    log = PredictionLog(lambda records: written.extend(r.id for r in records), max_buffered_bytes=350_000)
    before = dropped()
    for i in range(10):
        log.record([prediction_record(i, chars=100_000)])
    log.flush()
    assert dropped() - before == 7
    assert written == ["id-7", "id-8", "id-9"]


# --- 4. the drift-check queue cap under concurrency -------------------------------------------------------


@pytest.fixture
def blocked_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Checks never finish while the test runs, and inserting a row takes as long as on a busy database."""
    release = threading.Event()

    def blocked(job: CheckJob) -> CheckOutput:
        release.wait(60)
        raise CheckFailed("released by the test")

    insert = DriftChecks._insert

    def slow_insert(self: DriftChecks, *args: Any) -> Any:
        time.sleep(0.05)
        return insert(self, *args)

    monkeypatch.setattr(checks, "run_check", blocked)
    monkeypatch.setattr(DriftChecks, "_insert", slow_insert)
    try:
        yield
    finally:
        release.set()


def test_concurrent_check_requests_never_queue_more_than_the_cap(
    make_settings: Callable[..., Settings], tmp_path: Path, blocked_checks: None
) -> None:
    database_url = f"sqlite:///{tmp_path / 'heldout.db'}"
    with monitored_client(make_settings, database_url=database_url) as client:
        traffic_with_reference(client, database_url, tmp_path)
        start = threading.Barrier(30)

        def post(_: int) -> Any:
            start.wait()
            return client.post("/v1/drift/checks", headers=EVALUATOR, json={})

        with ThreadPoolExecutor(30) as pool:
            responses = list(pool.map(post, range(30)))
        queued = client.get("/v1/drift/checks", headers=READER).json()["total"]

    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * MAX_PENDING + [429] * (30 - MAX_PENDING)
    assert queued == MAX_PENDING
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["retry-after"] == "30"
        assert refused.headers["content-type"] == "application/problem+json"


# --- 5. times at the ends of the calendar -----------------------------------------------------------------

# Year 1 five hours east of UTC is year 0 in UTC; year 9999 five hours west is year 10000.
UNREPRESENTABLE = [
    ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02T00:00:00+05:00"}, "from"),
    ({"from": "9999-12-31T00:00:00-05:00", "to": "9999-12-31T23:59:59-05:00"}, "to"),
]
ALL_TIME = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59.999999Z"}


def test_windows_at_the_ends_of_the_calendar_are_answered_not_crashed(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    with monitored_client(make_settings, database_url=database_url) as client:
        traffic_with_reference(client, database_url, tmp_path)
        for path, extra in (("/v1/drift/reference", {"model": MODEL}), ("/v1/drift/checks", {})):
            for window, field in UNREPRESENTABLE:
                response = client.post(path, headers=EVALUATOR, json={**window, **extra})
                assert response.status_code == 422, (path, window, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert [e["field"] for e in response.json()["errors"]] == [field]

        # The representable extremes are a window of all time: every logged prediction.
        reference = client.post("/v1/drift/reference", headers=EVALUATOR, json={**ALL_TIME, "model": MODEL})
        assert reference.status_code == 201, reference.text
        assert reference.json()["rows"] == 120
        submitted = client.post("/v1/drift/checks", headers=EVALUATOR, json=ALL_TIME)
        assert submitted.status_code == 202, submitted.text
        check = wait_for_check(client, submitted.json()["id"])
        assert check["status"] == "succeeded", check
        assert check["window"]["rows"] == 120
        assert check["window"]["from"].startswith("0001-01-01T00:00:00")
        assert check["window"]["to"].startswith("9999-12-31T23:59:59.999999")
