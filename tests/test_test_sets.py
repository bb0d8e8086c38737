"""Blind test sets: upload, validation naming lines, immutability and versions, inputs, deletion; both databases."""

import hashlib
import json
import random
import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from service.app import create_app
from service.db.models import TestRecord
from tests.conftest import auth
from tests.fixtures_test_sets import csv_bytes, jsonl, upload, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

LABELS = ["neg", "neu", "pos"]


def records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"id": f"r{i}", "text": f"review number {i} " + "x" * rng.randrange(5), "label": rng.choice(LABELS)}
        for i in range(n)
    ]


def canonical_sha256(rows: list[dict[str, Any]]) -> str:
    """The documented canonical form: one compact, key-sorted UTF-8 JSON object per line, ids as strings."""
    digest = hashlib.sha256()
    for row in rows:
        row = {**row, "id": str(row["id"])}
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def test_upload_returns_metadata_and_canonical_sha256(db_client: TestClient) -> None:
    rows = records(40)
    body = uploaded(db_client, jsonl(rows), name="sentiment")
    assert body["name"] == "sentiment" and body["version"] == 1 and body["task"] == "classification"
    assert body["size"] == 40
    assert body["labels"] == sorted({r["label"] for r in rows})
    assert body["sha256"] == canonical_sha256(rows)
    assert body["audit"]["records"] == 40
    assert body["settings"]["average"] == "macro" and body["settings"]["ladder"] is False
    assert db_client.get(f"/v1/test-sets/{body['id']}", headers=auth("reader")).json() == body


def test_same_content_same_sha256_whatever_the_format(db_client: TestClient) -> None:
    rows = records(25)
    first = uploaded(db_client, jsonl(rows), name="a")
    reordered = "".join(
        json.dumps({"label": r["label"], "text": r["text"], "id": r["id"]}, indent=None, separators=(" ,  ", " : "))
        + "\r\n"
        for r in rows
    ).encode()
    second = uploaded(db_client, b"\xef\xbb\xbf" + reordered + b"\n\n", name="b")
    third = uploaded(db_client, csv_bytes(rows), name="c", filename="set.csv")
    assert first["sha256"] == second["sha256"] == third["sha256"]
    changed = uploaded(db_client, jsonl([*rows[:-1], {**rows[-1], "label": "other"}]), name="d")
    assert changed["sha256"] != first["sha256"]


def test_reupload_is_a_new_version_and_old_versions_stay(db_client: TestClient) -> None:
    v1 = uploaded(db_client, jsonl(records(10)), name="s")
    v2 = uploaded(db_client, jsonl(records(12, seed=1)), name="s")
    assert (v1["version"], v2["version"]) == (1, 2) and v1["id"] != v2["id"]
    listed = db_client.get("/v1/test-sets?name=s", headers=auth("reader")).json()
    assert listed["total"] == 2 and [i["version"] for i in listed["items"]] == [2, 1]
    assert db_client.get(f"/v1/test-sets/{v1['id']}", headers=auth("reader")).json()["size"] == 10


def test_concurrent_uploads_of_one_name_get_distinct_versions(database_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(database_url=database_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        results: list[int] = []

        def run(seed: int) -> None:
            response = upload(client, jsonl(records(300, seed)), name="race")
            results.append(response.status_code)

        threads = [threading.Thread(target=run, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [201, 201, 201]
        versions = sorted(
            i["version"] for i in client.get("/v1/test-sets?name=race", headers=auth("reader")).json()["items"]
        )
        assert versions == [1, 2, 3]


def test_inputs_are_paginated_ids_and_texts_only(db_client: TestClient) -> None:
    rows = records(23)
    body = uploaded(db_client, jsonl(rows))
    items, cursor = [], 0
    while cursor is not None:
        page = db_client.get(f"/v1/test-sets/{body['id']}/inputs?cursor={cursor}&limit=5", headers=auth("reader"))
        assert page.status_code == 200 and page.json()["total"] == 23
        for item in page.json()["items"]:
            assert set(item) == {"id", "text"}
        items.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
    assert items == [{"id": r["id"], "text": r["text"]} for r in rows]


def test_generation_and_multilabel_records(db_client: TestClient) -> None:
    generation = [
        {"id": 1, "source": "ein Haus", "reference": "a house"},
        {"id": 2, "source": "zwei Katzen", "references": ["two cats", "a pair of cats"]},
    ]
    body = uploaded(db_client, jsonl(generation), task="generation", name="mt")
    assert body["labels"] is None and body["size"] == 2 and body["settings"]["ladder_metric"] == "bleu"
    assert body["audit"]["lengths"]["references_per_example"]["max"] == 2
    multi = [{"id": i, "text": f"t{i}", "label": labels} for i, labels in enumerate([["b", "a"], [], ["a"]])]
    body = uploaded(db_client, jsonl(multi), name="tags")
    assert body["multilabel"] is True and body["labels"] == ["a", "b"]
    assert body["audit"]["label_distribution"] == {"a": 2, "b": 1}


def test_errors_name_the_line_and_nothing_is_stored(db_client: TestClient, database_url: str) -> None:
    bad = b"\n".join(
        [
            b'{"id": 1, "text": "ok", "label": "a"}',
            b'{"id": 2, "text": "no label"}',
            b"not json at all",
            b'{"id": 4, "text": "x", "label": 1.5}',
            b'{"id": 5, "text": "x", "label": ["a"]}',
            b'{"id": 6, "text": 7, "label": "a"}',
            b"[1, 2]",
            b'{"id": 1, "text": "dup", "label": "a"}',
        ]
    )
    response = upload(db_client, bad)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "file"
    messages = [e["message"] for e in body["errors"]]
    for line in (2, 3, 4, 5, 6, 7):
        assert any(m.startswith(f"line {line}:") for m in messages), (line, messages)
    duplicate = upload(db_client, b'{"id": 1, "text": "a", "label": "a"}\n{"id": 1, "text": "b", "label": "b"}\n')
    assert duplicate.status_code == 422 and "line 2" in duplicate.json()["detail"]
    assert db_client.get("/v1/test-sets", headers=auth("reader")).json()["total"] == 0
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TestRecord)).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM test_set")).scalar() == 0
    engine.dispose()


def test_bad_forms_and_files_are_4xx(db_client: TestClient) -> None:
    good = jsonl(records(3))
    assert upload(db_client, good, task="ranking").status_code == 422
    assert upload(db_client, good, name="bad name/").status_code == 422
    assert upload(db_client, b"").json()["detail"] == "file: the file holds no records"
    assert upload(db_client, b"\xff\xfe{}\n").status_code == 422
    assert upload(db_client, good, ladder_metric="bleu").status_code == 422
    assert upload(db_client, good, average="samples").status_code == 422
    assert upload(db_client, jsonl(records(20)), average="binary").status_code == 422
    fields = {"name": (None, "x"), "task": (None, "classification")}  # multipart, without the file
    response = db_client.post("/v1/test-sets", headers=auth("admin"), files=fields)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "file"
    csv_missing = b"id,text\n1,hello\n"
    assert "'label' is missing" in upload(db_client, csv_missing, filename="s.csv").json()["detail"]
    nul = b'{"id": 1, "text": "a\\u0000b", "label": "a"}\n'
    assert "NUL" in upload(db_client, nul).json()["detail"]


def test_generation_options_are_checked_and_stored(db_client: TestClient) -> None:
    generation = jsonl([{"id": i, "source": f"s{i}", "reference": f"r{i}"} for i in range(3)])

    def refused(content: bytes, field: str, **options: object) -> None:
        response = upload(db_client, content, **options)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field, response.json()

    refused(jsonl(records(3)), "rating_scale", rating_scale="[1, 5]")
    refused(jsonl(records(3)), "rouge_stemmer", rouge_stemmer=True)
    refused(generation, "rating_scale", task="generation", rating_scale="[5, 1]")
    refused(generation, "rating_scale", task="generation", rating_scale="[1, 2, 3]")
    refused(generation, "rating_scale", task="generation", rating_scale="1-5")
    refused(generation, "rouge_tokenize", task="generation", rouge_tokenize="spacy")
    refused(generation, "rouge_stemmer", task="generation", rouge_tokenize="whitespace", rouge_stemmer=True)
    stored = uploaded(
        db_client, generation, task="generation", rating_scale="[0, 10]", rouge_tokenize="whitespace", name="g"
    )["settings"]
    assert (stored["rating_scale"], stored["rouge_tokenize"], stored["rouge_stemmer"]) == ([0, 10], "whitespace", False)
    assert uploaded(db_client, jsonl(records(3)))["settings"]["rating_scale"] is None


def test_record_longer_than_the_cap_is_named(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(max_record_bytes=1024))
    with TestClient(app, raise_server_exceptions=False) as client:
        long_line = json.dumps({"id": 2, "text": "y" * 5000, "label": "a"}).encode()
        content = b'{"id": 1, "text": "x", "label": "a"}\n' + long_line + b'\n{"id": 3, "text": "z", "label": "b"}\n'
        response = upload(client, content)
        assert response.status_code == 422 and response.json()["errors"][0]["message"].startswith("line 2: longer")


def test_upload_over_the_upload_cap_is_413(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(max_upload_bytes=2000))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert upload(client, jsonl(records(200))).status_code == 413
        assert upload(client, jsonl(records(3))).status_code == 201


def test_roles(db_client: TestClient) -> None:
    good = jsonl(records(3))
    assert upload(db_client, good, role="evaluator").status_code == 403
    assert upload(db_client, good, role="reader").status_code == 403
    assert db_client.post("/v1/test-sets", data={"name": "x", "task": "classification"}).status_code == 401
    body = uploaded(db_client, good)
    assert db_client.delete(f"/v1/test-sets/{body['id']}", headers=auth("evaluator")).status_code == 403
    assert db_client.get(f"/v1/test-sets/{body['id']}/inputs").status_code == 401


def test_delete_hides_the_set_and_versions_keep_counting(db_client: TestClient) -> None:
    body = uploaded(db_client, jsonl(records(5)), name="gone")
    assert db_client.delete(f"/v1/test-sets/{body['id']}", headers=auth("admin")).status_code == 204
    for path in ("", "/inputs"):
        assert db_client.get(f"/v1/test-sets/{body['id']}{path}", headers=auth("reader")).status_code == 404
    assert db_client.delete(f"/v1/test-sets/{body['id']}", headers=auth("admin")).status_code == 404
    assert db_client.get("/v1/test-sets", headers=auth("reader")).json()["total"] == 0
    assert uploaded(db_client, jsonl(records(5)), name="gone")["version"] == 2
