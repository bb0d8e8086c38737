"""What a reader can GET names no key: stored rows carry the creator's key-hash prefix, responses must not."""

import json

from fastapi.testclient import TestClient

from service.auth import hash_key
from service.db.models import DriftReference, TestSet
from service.db.session import Database
from service.evaluations import job_store
from service.tasks import Task
from tests.conftest import KEYS, auth
from tests.fixtures_test_sets import jsonl, uploaded

ADMIN_PREFIX = hash_key(KEYS["admin"])[:12]


def test_reader_responses_carry_no_key_hash_prefix(client: TestClient) -> None:
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "pos" if i % 2 else "neg"} for i in range(4)]
    test_set = uploaded(client, jsonl(rows), name="exposed")
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        row = session.get(TestSet, test_set["id"])
        assert row is not None and row.created_by == ADMIN_PREFIX  # the stored audit trail keeps it
    job = job_store.create(
        db,
        row,
        job_store.ModelIdentity("m", "v1", Task.classification, False),
        metrics=["accuracy"],
        extra_metrics=[],
        options={},
        shard_size=4,
        created_by=ADMIN_PREFIX,
    )
    with db.session() as session:
        reference = DriftReference(
            model="m",
            version=1,
            source={"test_set": test_set["id"]},
            rows=0,
            columns=[],
            data=b"",
            created_by=ADMIN_PREFIX,
        )
        session.add(reference)
    paths = [
        "/v1/test-sets",
        f"/v1/test-sets/{test_set['id']}",
        "/v1/evaluations",
        f"/v1/evaluations/{job.id}",
        "/v1/drift/reference",
        f"/v1/drift/reference/{reference.id}",
    ]
    for path in paths:
        response = client.get(path, headers=auth("reader"))
        assert response.status_code == 200, (path, response.text)
        body = json.dumps(response.json())
        assert '"created_by"' not in body, path
        assert not any(hash_key(key)[:8] in body for key in KEYS.values()), path
