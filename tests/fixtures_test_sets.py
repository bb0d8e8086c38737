"""Helpers for blind test-set tests: building upload files, uploading, apps on either database."""

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.db.migrate import migrate
from service.db.models import TestSet
from service.db.session import Database
from service.settings import Settings
from service.tasks import Task
from service.test_sets.config import ConfigForm
from service.test_sets.store import Upload, create_test_set
from tests.conftest import auth


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def csv_bytes(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()})
    return out.getvalue().encode("utf-8")


def upload(
    client: TestClient,
    content: bytes,
    *,
    name: str = "set",
    task: str = "classification",
    filename: str = "set.jsonl",
    role: str = "admin",
    extra_files: dict[str, tuple[str, bytes]] | None = None,
    **fields: Any,
) -> httpx.Response:
    data = {
        "name": name,
        "task": task,
        **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()},
    }
    files = {"file": (filename, content), **(extra_files or {})}
    return client.post("/v1/test-sets", headers=auth(role), data=data, files=files)


def uploaded(client: TestClient, content: bytes, **options: Any) -> dict[str, Any]:
    response = upload(client, content, **options)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def score(client: TestClient, test_set_id: int, predictions: dict[str, Any], role: str = "evaluator") -> httpx.Response:
    return client.post(f"/v1/test-sets/{test_set_id}/scores", headers=auth(role), json={"predictions": predictions})


def run_evaluation(client: TestClient, body: dict[str, Any], seconds: float = 60) -> dict[str, Any]:
    """POST /v1/evaluations and poll until the job finishes; its final GET body."""
    created = client.post("/v1/evaluations", headers=auth("evaluator"), json=body)
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result: dict[str, Any] = client.get(f"/v1/evaluations/{created.json()['id']}", headers=auth("reader")).json()
        if result["status"] in ("succeeded", "failed"):
            return result
        time.sleep(0.05)
    raise AssertionError("the evaluation did not finish")


@pytest.fixture
def db_client(database_url: str, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A started app on the parametrised database (SQLite and PostgreSQL)."""
    app = create_app(make_settings(database_url=database_url, scoring_resamples=200))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def stored_set(db: Database, rows: list[dict[str, Any]], name: str = "set", task: str = "classification") -> TestSet:
    """A test set written straight through the storage layer, for tests below the HTTP API."""
    upload = Upload(
        name=name,
        task=Task(task),
        filename="set.jsonl",
        stream=io.BytesIO(jsonl(rows)),
        fmt=None,
        config=ConfigForm(),
        training=[],
        created_by="test",
    )
    return create_test_set(db, upload, max_record_bytes=1024 * 1024)


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated database on the parametrised backend."""
    db = Database(database_url)
    migrate(db, tmp_path)
    yield db
    db.dispose()
