"""Staged test-set uploads (#12): other writes go on during a long upload, a half-written set is never
visible, and a failed or abandoned upload leaves nothing behind; both databases."""

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db.models import PredictionLogEntry, TestRecord, TestSet, utcnow
from service.db.session import Database
from service.evaluations.operations import resolve_test_set
from service.monitoring import references
from service.settings import Settings
from service.tasks import Task
from service.test_sets import staging
from service.test_sets.config import ConfigForm
from service.test_sets.errors import TestSetNotFound, UploadNotStored
from service.test_sets.store import Upload, create_test_set
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, score, upload, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

BIG = 120_000
# Where the upload pauses: past two staging batches, so records are committed but the set is not.
GATE_RECORD = 50_000
# Far above a staging batch's lock time, far below SQLite's 30 s busy timeout that the old upload hit.
WRITE_BOUND_S = 15.0
OTHER_PREDICTIONS = {f"o{i}": "a" for i in range(20)}


def big_lines(n: int) -> list[bytes]:
    return [
        json.dumps({"id": f"r{i}", "text": f"text {i} alpha", "label": "ab"[i % 2]}).encode() + b"\n" for i in range(n)
    ]


class GatedStream(io.BytesIO):
    """Holds reads past ``gate`` bytes until released: the upload pauses mid-file."""

    def __init__(self, content: bytes, gate: int) -> None:
        super().__init__(content)
        self.gate = gate
        self.reached = threading.Event()
        self.release = threading.Event()

    def readline(self, size: int | None = -1, /) -> bytes:
        if self.tell() >= self.gate and not self.release.is_set():
            self.reached.set()
            self.release.wait(120)
        return super().readline(size)


def direct_upload(stream: io.BytesIO, name: str = "big") -> Upload:
    return Upload(
        name=name,
        task=Task.classification,
        filename="big.jsonl",
        stream=stream,
        fmt=None,
        config=ConfigForm(),
        training=[],
        created_by="test",
    )


@pytest.fixture
def settings(database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(database_url=database_url, scoring_resamples=0)


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def db(settings: Settings, api: TestClient) -> Iterator[Database]:
    """A second connection pool on the app's (migrated) database, as another worker process would have."""
    database = Database(settings.resolved_database_url)
    yield database
    database.dispose()


def staged_ids(db: Database) -> list[int]:
    with db.session() as session:
        return list(session.scalars(select(TestSet.id).where(TestSet.version.is_(None))))


def record_count(db: Database, set_id: int | None = None) -> int:
    query = select(func.count()).select_from(TestRecord)
    if set_id is not None:
        query = query.where(TestRecord.test_set_id == set_id)
    with db.session() as session:
        return int(session.scalar(query) or 0)


def timed_write(api: TestClient, db: Database, set_id: int) -> tuple[int, float]:
    """A scored submission over HTTP and a prediction-log row, as the logger writes them; (status, seconds)."""
    started = time.monotonic()
    response = score(api, set_id, OTHER_PREDICTIONS)
    with db.session() as session:
        session.add(
            PredictionLogEntry(
                id=str(uuid.uuid4()),
                model="m",
                model_version="1",
                task="classification",
                created_at=utcnow(),
                features={},
            )
        )
    return response.status_code, time.monotonic() - started


def test_other_writes_go_on_and_the_staged_set_stays_invisible(api: TestClient, db: Database) -> None:
    other = uploaded(api, jsonl([{"id": f"o{i}", "text": f"other {i}", "label": "ab"[i % 2]} for i in range(20)]))
    assert score(api, other["id"], OTHER_PREDICTIONS).status_code == 200
    lines = big_lines(BIG)
    stream = GatedStream(b"".join(lines), gate=sum(len(line) for line in lines[:GATE_RECORD]))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["row"] = create_test_set(db, direct_upload(stream), max_record_bytes=1024 * 1024)
        except BaseException as exc:
            outcome["error"] = exc

    uploader = threading.Thread(target=run)
    uploader.start()
    try:
        assert stream.reached.wait(120), "the upload never reached the gate"
        (staged,) = staged_ids(db)
        assert record_count(db, staged) > 0
        paused = [timed_write(api, db, other["id"]) for _ in range(3)]
        assert all(status == 200 for status, _ in paused), paused
        assert max(seconds for _, seconds in paused) < WRITE_BOUND_S, paused

        listed = api.get("/v1/test-sets", headers=auth("reader")).json()
        assert [item["id"] for item in listed["items"]] == [other["id"]] and listed["total"] == 1
        assert api.get("/v1/test-sets?name=big", headers=auth("reader")).json()["total"] == 0
        for path in (f"/v1/test-sets/{staged}", f"/v1/test-sets/{staged}/inputs"):
            assert api.get(path, headers=auth("reader")).status_code == 404
        assert score(api, staged, {"r0": "a"}).status_code == 404
        assert api.delete(f"/v1/test-sets/{staged}", headers=auth("admin")).status_code == 404
        for ref in (staged, "big"):
            with pytest.raises(TestSetNotFound):
                resolve_test_set(db, ref)
        with db.session() as session, pytest.raises(TestSetNotFound):
            references.test_set_inputs(session, staged, 100)
    finally:
        stream.release.set()
    during: list[tuple[int, float]] = []
    while uploader.is_alive():
        during.append(timed_write(api, db, other["id"]))
    uploader.join()
    assert "error" not in outcome, outcome
    assert all(status == 200 for status, _ in during), during
    assert max((seconds for _, seconds in during), default=0.0) < WRITE_BOUND_S, during
    row = outcome["row"]
    assert row.version == 1 and row.size == BIG and record_count(db, row.id) == BIG
    shown = api.get(f"/v1/test-sets/{row.id}", headers=auth("reader")).json()
    assert shown["size"] == BIG and shown["version"] == 1
    assert staged_ids(db) == []


def test_a_malformed_line_late_in_the_file_leaves_nothing_behind(api: TestClient, db: Database) -> None:
    content = b"".join(big_lines(120_000)) + b'{"id": "bad", "text": \n' + b"".join(big_lines(5))
    response = upload(api, content, name="broken")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "line 120001" in response.json()["detail"]
    assert staged_ids(db) == [] and record_count(db) == 0
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(TestSet)) == 0


def test_duplicate_ids_found_after_staging_leave_nothing_behind(api: TestClient, db: Database) -> None:
    rows = [{"id": f"r{i % 30_000}", "text": f"t{i}", "label": "a"} for i in range(45_000)]
    assert upload(api, jsonl(rows), name="dupes").status_code == 422
    assert staged_ids(db) == [] and record_count(db) == 0


def stage_abandoned(db: Database, name: str, age: timedelta, records: int) -> int:
    """A staged set as a killed process leaves it: version NULL, records, a heartbeat ``age`` old."""
    set_id = staging.begin(db, name, "classification", "test")
    staging.append(
        db,
        set_id,
        [
            {
                "test_set_id": set_id,
                "position": i,
                "line": i + 1,
                "record_id": f"r{i}",
                "input": f"text {i}",
                "target": "a",
                "exact_fp": "0" * 32,
                "norm_fp": "0" * 64,
                "target_fp": "0" * 32,
            }
            for i in range(records)
        ],
    )
    with db.session() as session:
        session.get_one(TestSet, set_id).heartbeat_at = utcnow() - age
    return set_id


def test_the_next_upload_sweeps_abandoned_staging_but_not_a_live_upload(api: TestClient, db: Database) -> None:
    dead = stage_abandoned(db, "killed", timedelta(hours=1), records=25_000)
    live = stage_abandoned(db, "running-elsewhere", timedelta(seconds=5), records=10)
    body = uploaded(api, jsonl([{"id": "a", "text": "x", "label": "a"}]), name="next")
    assert sorted(staged_ids(db)) == [live]
    assert record_count(db, dead) == 0 and record_count(db, live) == 10
    with db.session() as session:
        assert session.get(TestSet, dead) is None
    assert record_count(db, body["id"]) == 1


def test_a_start_sweeps_abandoned_staging(settings: Settings, db: Database) -> None:
    dead = stage_abandoned(db, "killed", timedelta(hours=1), records=100)
    live = stage_abandoned(db, "running-elsewhere", timedelta(seconds=5), records=10)
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 30
        while dead in staged_ids(db) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert staged_ids(db) == [live]
    assert record_count(db, dead) == 0 and record_count(db, live) == 10


def test_an_upload_swept_while_stalled_fails_and_leaves_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = big_lines(30_000)
    stream = GatedStream(b"".join(lines), gate=sum(len(line) for line in lines[:25_000]))
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            create_test_set(db, direct_upload(stream, "stalled"), max_record_bytes=1024 * 1024)
        except BaseException as exc:
            outcome["error"] = exc

    uploader = threading.Thread(target=run)
    uploader.start()
    try:
        assert stream.reached.wait(120)
        monkeypatch.setattr(staging, "STALE_AFTER", timedelta(0))
        assert staging.sweep_stale(db) == 1
    finally:
        stream.release.set()
        uploader.join()
    error = outcome["error"]
    assert isinstance(error, UploadNotStored)
    assert staged_ids(db) == [] and record_count(db) == 0


def test_a_failed_contamination_check_does_not_break_the_next_one(api: TestClient) -> None:
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "a"} for i in range(10)]
    bad = upload(api, jsonl(rows), name="t", extra_files={"training_fingerprints": ("fp.txt", b"not-hex\n")})
    assert bad.status_code == 422, bad.text
    for _ in range(3):
        good = upload(api, jsonl(rows), name="t", extra_files={"training_file": ("train.jsonl", jsonl(rows[:3]))})
        assert good.status_code == 201, good.text
        assert good.json()["audit"]["contamination"]["contaminated"] == 3
