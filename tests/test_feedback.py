"""/v1/feedback on a served tiny classifier: online scores against scikit-learn on the same joined labels,
windows by count and time, 422s that name the offending items, and the prediction log's drift features."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score
from sqlalchemy import select, update
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from monitors.online_accuracy import OnlineWindow
from monitors.projection import EmbeddingSketch
from service.db.models import Feedback, PredictionLogEntry, utcnow
from service.db.session import Database
from service.monitoring.feedback import window_scores
from tests.conftest import auth
from tests.prometheus_text import sample_value, total
from tests.tiny_models import CLASSIFIER_LABELS, SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
MODEL = {"model": "tiny-sentiment"}


def predict(client: TestClient, texts: list[str]) -> list[dict[str, Any]]:
    response = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": texts})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def truths(predictions: list[dict[str, Any]], seed: int) -> list[str]:
    """Ground truth that agrees with the model about two times in three."""
    rng = np.random.default_rng(seed)
    return [p["label"] if rng.random() < 0.65 else str(rng.choice(CLASSIFIER_LABELS)) for p in predictions]


def send(client: TestClient, predictions: list[dict[str, Any]], labels: list[str]) -> Any:
    items = [{"prediction_id": p["id"], "label": label} for p, label in zip(predictions, labels, strict=True)]
    return client.post("/v1/feedback", headers=auth("evaluator"), json={"items": items})


def test_online_scores_equal_sklearn_over_the_count_window(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    texts = [f"{s} {i}" for i, s in enumerate(SENTENCES * 5)]
    with serve(classifier_dir, database_url=database_url, online_window_size=15) as client:
        first = predict(client, texts[:25])
        labels = truths(first, seed=1)
        response = send(client, first, labels)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accepted"] == 25
        (online,) = body["online"]
        # The window is the 15 most recent items; one batch shares a receipt time, so ties break by id.
        window = sorted(zip(first, labels, strict=True), key=lambda pair: pair[0]["id"], reverse=True)[:15]
        predicted, actual = [p["label"] for p, _ in window], [label for _, label in window]
        assert online["n"] == 15
        assert online["accuracy"] == pytest.approx(accuracy_score(actual, predicted))
        assert online["f1"] == pytest.approx(f1_score(actual, predicted, average="macro"))

        second = predict(client, texts[25:40])
        second_labels = truths(second, seed=2)
        online = send(client, second, second_labels).json()["online"][0]
        predicted = [p["label"] for p in second]
        assert online["accuracy"] == pytest.approx(accuracy_score(second_labels, predicted))
        assert online["f1"] == pytest.approx(f1_score(second_labels, predicted, average="macro"))

        metrics = client.get("/metrics").text
        assert sample_value(metrics, "heldout_online_accuracy", MODEL) == pytest.approx(online["accuracy"])
        assert sample_value(metrics, "heldout_online_f1", MODEL) == pytest.approx(online["f1"])
        assert total(metrics, "heldout_feedback_total", MODEL) >= 40


def test_a_later_label_replaces_the_earlier_and_time_windows_drop_old_feedback(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    with serve(classifier_dir, database_url=database_url) as client:
        predictions = predict(client, SENTENCES)
        assert send(client, predictions, [p["label"] for p in predictions]).json()["online"][0]["accuracy"] == 1.0
        wrong = [next(label for label in CLASSIFIER_LABELS if label != p["label"]) for p in predictions[:2]]
        online = send(client, predictions[:2], wrong).json()["online"][0]
        assert online["n"] == len(SENTENCES) and online["accuracy"] == pytest.approx(1 - 2 / len(SENTENCES))

        db = Database(database_url)
        try:
            with db.session() as session:
                session.execute(
                    update(Feedback)
                    .where(Feedback.prediction_id.in_([p["id"] for p in predictions[:2]]))
                    .values(received_at=utcnow() - timedelta(hours=2))
                )
            recent = window_scores(db, "tiny-sentiment", OnlineWindow(1000, timedelta(hours=1)))
        finally:
            db.dispose()
        assert recent is not None and recent.n == len(SENTENCES) - 2 and recent.accuracy == 1.0


def test_unknown_ids_and_unscorable_items_are_422_naming_them_and_store_nothing(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    with serve(classifier_dir, database_url=database_url) as client:
        predictions = predict(client, SENTENCES[:3])
        items = [{"prediction_id": p["id"], "label": p["label"]} for p in predictions]
        missing = ["no-such-id", "also-missing"]
        response = client.post(
            "/v1/feedback",
            headers=auth("evaluator"),
            json={"items": items + [{"prediction_id": m, "label": "positive"} for m in missing]},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert all(m in problem["detail"] for m in missing)
        assert [e["field"] for e in problem["errors"]] == ["items.3.prediction_id", "items.4.prediction_id"]

        bad_label = client.post(
            "/v1/feedback", headers=auth("evaluator"), json={"items": [{**items[0], "label": "sarcastic"}]}
        )
        assert bad_label.status_code == 422 and "sarcastic" in bad_label.json()["detail"]
        assert bad_label.json()["errors"][0]["field"] == "items.0.label"

        duplicate = client.post("/v1/feedback", headers=auth("evaluator"), json={"items": [items[0], items[0]]})
        assert duplicate.status_code == 422 and predictions[0]["id"] in duplicate.json()["detail"]
        for body in ({"items": []}, {}, {"items": [{"prediction_id": "x"}]}, {"items": [{**items[0], "extra": 1}]}):
            assert client.post("/v1/feedback", headers=auth("evaluator"), json=body).status_code == 422
        assert client.post("/v1/feedback", headers=auth("reader"), json={"items": items}).status_code == 403
        assert client.post("/v1/feedback", json={"items": items}).status_code == 401

        db = Database(database_url)
        try:
            with db.session() as session:
                assert session.scalars(select(Feedback)).all() == []
        finally:
            db.dispose()


def test_prediction_log_carries_unknown_share_and_the_embedding_sketch(
    serve: ServeFactory, classifier_dir: Path, database_url: str
) -> None:
    texts = [SENTENCES[0], "qqq zzz xyzzy"]
    with serve(classifier_dir, database_url=database_url) as client:
        predictions = predict(client, texts)
        # Feedback flushes the log's buffer, so the rows are stored now.
        assert send(client, predictions, [p["label"] for p in predictions]).status_code == 200
        db = Database(database_url)
        try:
            with db.session() as session:
                rows = {r.id: r for r in session.scalars(select(PredictionLogEntry))}
        finally:
            db.dispose()
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    sketch = EmbeddingSketch(model.config.hidden_size)
    for text, prediction in zip(texts, predictions, strict=True):
        features = rows[prediction["id"]].features
        encoded = tokenizer(text, truncation=True, max_length=24, return_tensors="pt")
        ids = encoded["input_ids"][0].tolist()
        assert features["n_tokens"] == len(ids)
        assert features["unk_share"] == pytest.approx(ids.count(tokenizer.unk_token_id) / len(ids), abs=1e-6)
        with torch.no_grad():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[-1][0]
        expected = sketch(hidden.mean(0, keepdim=True).numpy())[0]
        assert features["embedding"] == pytest.approx(expected, abs=2e-3)
    assert rows[predictions[1]["id"]].features["unk_share"] > 0
