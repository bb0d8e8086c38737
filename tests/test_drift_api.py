"""Drift references and checks over HTTP on SQLite and PostgreSQL: detection on shifted traffic and not on
in-distribution traffic (fixed seeds), the HTML report, gauges that survive a restart, failures recorded."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from monitors import drift_gauges
from service.settings import Settings
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, uploaded
from tests.monitoring_fixtures import (
    MODEL,
    insert_rows,
    iso,
    monitored_client,
    synthetic_rows,
    wait_for_check,
)
from tests.prometheus_text import sample_value, total
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
EVALUATOR, READER = auth("evaluator"), auth("reader")
LABELS = {"model": MODEL}


@pytest.fixture
def traffic(database_url: str, tmp_path: Path) -> dict[str, tuple[datetime, datetime]]:
    """Reference traffic three days ago, the same distribution two days ago, shifted traffic in the last hour."""
    now = datetime.now(UTC)
    spans = {
        "reference": (now - timedelta(days=3), 3000, False, 1),
        "same": (now - timedelta(days=2), 2000, False, 2),
        "shifted": (now - timedelta(minutes=50), 2000, True, 3),
    }
    windows = {}
    for name, (start, n, shifted, seed) in spans.items():
        insert_rows(database_url, tmp_path, synthetic_rows(n, shifted=shifted, seed=seed, start=start))
        windows[name] = (start, start + timedelta(minutes=30))
    return windows


def window_body(span: tuple[datetime, datetime]) -> dict[str, str]:
    return {"from": iso(span[0]), "to": iso(span[1])}


def run_check(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/drift/checks", headers=EVALUATOR, json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("queued", "running")
    assert response.headers["location"] == f"/v1/drift/checks/{response.json()['id']}"
    return wait_for_check(client, response.json()["id"])


def test_references_are_versioned_and_requests_validated(
    make_settings: Callable[..., Settings], database_url: str, traffic: dict[str, tuple[datetime, datetime]]
) -> None:
    body = {**window_body(traffic["reference"]), "model": MODEL}
    with monitored_client(make_settings, database_url=database_url) as client:
        first = client.post("/v1/drift/reference", headers=EVALUATOR, json=body)
        assert first.status_code == 201, first.text
        info = first.json()
        assert (info["model"], info["version"], info["rows"]) == (MODEL, 1, 3000)
        assert info["columns"] == ["n_chars", "n_tokens", "unk_share", "confidence", "label", "text", "embedding"]
        assert client.post("/v1/drift/reference", headers=EVALUATOR, json=body).json()["version"] == 2
        listed = client.get("/v1/drift/reference", headers=READER, params={"model": MODEL}).json()
        assert listed["total"] == 2 and [r["version"] for r in listed["items"]] == [2, 1]
        assert client.get(f"/v1/drift/reference/{info['id']}", headers=READER).json() == info
        assert client.get("/v1/drift/reference/999", headers=READER).status_code == 404

        empty = {"from": iso(datetime.now(UTC) + timedelta(days=1)), "to": iso(datetime.now(UTC) + timedelta(days=2))}
        bad_bodies = [
            {**empty, "model": MODEL},  # no traffic there
            {"from": "2024-01-01T00:00:00", "to": "2024-01-02T00:00:00", "model": MODEL},  # no timezone
            {**body, "test_set": 1},
            {"from": body["to"], "to": body["from"], "model": MODEL},
            {"to": body["to"], "model": MODEL},
            {},
            {**body, "colour": "red"},
        ]
        for bad in bad_bodies:
            response = client.post("/v1/drift/reference", headers=EVALUATOR, json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        no_model = client.post("/v1/drift/reference", headers=EVALUATOR, json={"test_set": 1})
        assert no_model.status_code == 409
        assert client.post("/v1/drift/reference", headers=READER, json=body).status_code == 403


def test_drift_detected_on_shifted_traffic_only_report_opens_gauges_survive_restart(
    make_settings: Callable[..., Settings], database_url: str, traffic: dict[str, tuple[datetime, datetime]]
) -> None:
    reference_body = {**window_body(traffic["reference"]), "model": MODEL}
    with monitored_client(make_settings, database_url=database_url) as client:
        reference = client.post("/v1/drift/reference", headers=EVALUATOR, json=reference_body).json()

        same = run_check(client, window_body(traffic["same"]))
        assert same["status"] == "succeeded", same
        assert same["reference"] == reference["id"] and same["window"]["rows"] == 2000
        assert not same["dataset_drift"] and not any(c["drifted"] for c in same["columns"]), same["columns"]

        shifted = run_check(client, {})  # the default window: the last HELDOUT_DRIFT_WINDOW
        assert shifted["status"] == "succeeded", shifted
        assert shifted["window"]["rows"] == 2000
        assert shifted["dataset_drift"] and shifted["share_of_drifted_columns"] == 1.0
        methods = {c["column"]: c["method"] for c in shifted["columns"]}
        assert methods == {
            "n_chars": "wasserstein",
            "n_tokens": "wasserstein",
            "unk_share": "wasserstein",
            "confidence": "wasserstein",
            "label": "jensenshannon",
            "text": "abs_text_content_drift",
            "embedding": "model",
        }

        report = client.get(f"/v1/drift/checks/{shifted['id']}/report", headers=READER)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert report.text.lstrip().startswith("<!DOCTYPE html>") and report.text.rstrip().endswith("</html>")
        for shown in ("Embedding drift", "Drift in column 'text'", "Drift in column 'label'"):
            assert shown in report.text
        zipped = client.get(f"/v1/drift/checks/{shifted['id']}/report", headers={**READER, "Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.text == report.text

        listed = client.get("/v1/drift/checks", headers=READER, params={"status": "succeeded"}).json()
        assert listed["total"] == 2 and [c["id"] for c in listed["items"]] == [shifted["id"], same["id"]]

        before = client.get("/metrics").text
        finished = datetime.fromisoformat(shifted["finished_at"]).timestamp()
        assert sample_value(before, "heldout_drift_detected", LABELS) == 1.0
        assert sample_value(before, "heldout_drift_share", LABELS) == 1.0
        assert sample_value(before, "heldout_drift_check_timestamp_seconds", LABELS) == pytest.approx(finished)
        text_score = sample_value(
            before, "heldout_drift_score", {**LABELS, "column": "text", "method": "abs_text_content_drift"}
        )
        assert text_score == pytest.approx(next(c["score"] for c in shifted["columns"] if c["column"] == "text"))
        assert total(before, "heldout_drift_checks_total", {"status": "succeeded"}) >= 2
        assert total(before, "heldout_drift_check_duration_seconds_count") >= 2

    for gauge in (
        drift_gauges.drift_share,
        drift_gauges.drift_detected,
        drift_gauges.drift_score,
        drift_gauges.drift_check_timestamp_seconds,
    ):
        gauge.clear()  # what a new process starts with
    with monitored_client(make_settings, database_url=database_url) as client:
        after = client.get("/metrics").text
    for name, labels in (
        ("heldout_drift_detected", LABELS),
        ("heldout_drift_share", LABELS),
        ("heldout_drift_check_timestamp_seconds", LABELS),
        ("heldout_drift_score", {**LABELS, "column": "text", "method": "abs_text_content_drift"}),
    ):
        assert sample_value(after, name, labels) == sample_value(before, name, labels), name


def test_a_failing_check_is_recorded_and_counted_and_the_service_keeps_serving(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    """A reference with lengths only, then traffic whose log rows carry no features at all."""
    start = datetime.now(UTC) - timedelta(hours=5)
    rows = synthetic_rows(200, shifted=False, seed=9, start=start, model="other-model", spacing_s=6)
    lengths_only = {"features": {"n_chars": 10}, "label": None, "score": None, "input_text": None}
    insert_rows(database_url, tmp_path, [{**row, **lengths_only} for row in rows[:100]])
    insert_rows(database_url, tmp_path, [{**row, **lengths_only, "features": {}} for row in rows[100:]])
    middle = start + timedelta(minutes=10)
    first, second = (iso(start), iso(middle)), (iso(middle), iso(start + timedelta(hours=1)))
    with monitored_client(make_settings, database_url=database_url) as client:
        before = total(client.get("/metrics").text, "heldout_drift_checks_total", {"status": "failed"})
        reference = client.post(
            "/v1/drift/reference", headers=EVALUATOR, json={"from": first[0], "to": first[1], "model": "other-model"}
        )
        assert reference.status_code == 201, reference.text
        assert reference.json()["columns"] == ["n_chars"]
        no_features = client.post(
            "/v1/drift/reference", headers=EVALUATOR, json={"from": second[0], "to": second[1], "model": "other-model"}
        )
        assert no_features.status_code == 422 and "no feature" in no_features.json()["detail"]
        failed = run_check(client, {"from": second[0], "to": second[1], "reference": reference.json()["id"]})
        assert failed["status"] == "failed" and "no feature in common" in failed["error"]
        assert failed["columns"] is None and failed["finished_at"] is not None
        after = total(client.get("/metrics").text, "heldout_drift_checks_total", {"status": "failed"})
        assert after == before + 1
        assert client.get(f"/v1/drift/checks/{failed['id']}/report", headers=READER).status_code == 409
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/drift/checks/999", headers=READER).status_code == 404


def test_check_requests_are_validated(
    make_settings: Callable[..., Settings], database_url: str, traffic: dict[str, tuple[datetime, datetime]]
) -> None:
    with monitored_client(make_settings, database_url=database_url) as client:
        assert client.post("/v1/drift/checks", headers=EVALUATOR, json={}).status_code == 409  # no reference yet
        body = {**window_body(traffic["reference"]), "model": MODEL}
        reference = client.post("/v1/drift/reference", headers=EVALUATOR, json=body).json()
        empty = {"from": iso(datetime.now(UTC) - timedelta(days=9)), "to": iso(datetime.now(UTC) - timedelta(days=8))}
        too_few = client.post("/v1/drift/checks", headers=EVALUATOR, json=empty)
        assert too_few.status_code == 422 and "HELDOUT_DRIFT_MIN_ROWS" in too_few.json()["detail"]
        for bad in ({"from": empty["from"]}, {"reference": 0}, {"reference": "one"}, {"window": 1}):
            assert client.post("/v1/drift/checks", headers=EVALUATOR, json=bad).status_code == 422, bad
        assert client.post("/v1/drift/checks", headers=EVALUATOR, json={"reference": 999}).status_code == 404
        assert client.post("/v1/drift/checks", headers=READER, json={}).status_code == 403
        assert client.get("/v1/drift/checks", headers=READER, params={"status": "lost"}).status_code == 422
        assert client.get("/v1/drift/checks", headers=READER).json() == {"items": [], "total": 0}
        assert reference["version"] == 1


def test_reference_from_a_test_set_runs_its_inputs_through_the_served_classifier(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    records = [
        {"id": f"r{i}", "text": f"{SENTENCES[i % len(SENTENCES)]} take {i}", "label": "positive"} for i in range(60)
    ]
    with serve(classifier_dir, database_url=database_url, drift_min_rows=50, drift_executor="thread") as client:
        test_set = uploaded(client, jsonl(records), name="reviews")
        served_before = served_predictions(client)
        response = client.post("/v1/drift/reference", headers=EVALUATOR, json={"test_set": test_set["id"]})
        assert response.status_code == 201, response.text
        info = response.json()
        assert info["model"] == "tiny-sentiment" and info["rows"] == 60
        assert info["source"] == {"test_set": test_set["id"], "name": "reviews"}
        assert info["columns"] == ["n_chars", "n_tokens", "unk_share", "confidence", "label", "text", "embedding"]
        missing = client.post("/v1/drift/reference", headers=EVALUATOR, json={"test_set": 999})
        assert missing.status_code == 404
        # Computing a reference's features is not serving: no prediction is counted.
        assert served_predictions(client) == served_before


def test_reference_from_a_test_set_needs_a_classifier(serve: ServeFactory, seq2seq_dir: Path) -> None:
    records = [{"id": f"r{i}", "text": f"{SENTENCES[i % len(SENTENCES)]} take {i}", "label": "a"} for i in range(60)]
    with serve(seq2seq_dir, drift_min_rows=50, drift_executor="thread") as client:
        test_set = uploaded(client, jsonl(records), name="reviews")
        response = client.post("/v1/drift/reference", headers=EVALUATOR, json={"test_set": test_set["id"]})
    assert response.status_code == 409, response.text
    assert "not a classifier" in response.json()["detail"]


def served_predictions(client: TestClient) -> float:
    text = client.get("/metrics").text
    return sum(
        total(text, "heldout_predictions_total", {"model": "tiny-sentiment", "label": label})
        for label in ("negative", "neutral", "positive")
    )
