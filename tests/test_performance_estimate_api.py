"""CBPE on drift checks over HTTP: null with its reason until an evaluation exists, then the estimate computed
from the model's direct forward passes (maps fitted on the blind set, applied to disjoint live traffic), the
gauges, and the estimate beside the realized online accuracy from feedback."""

import itertools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from metrics.performance_estimation import estimate_performance, fit_estimator
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, uploaded
from tests.monitoring_fixtures import iso, wait_for_check
from tests.prometheus_text import sample_value, samples
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]
SETTINGS = {
    "drift_executor": "thread",
    "drift_min_rows": 50,
    "evaluation_shard_size": 32,
    "evaluation_poll_s": 0.05,
    "scoring_resamples": 50,
}
EVALUATOR = auth("evaluator")


def texts(seed: int) -> list[str]:
    """Distinct three-sentence texts, shuffled: every text gets its own probabilities."""
    triples = [" ".join(t) for t in itertools.permutations(SENTENCES, 3)]
    random.Random(seed).shuffle(triples)
    return triples


def direct_probabilities(model_dir: Path, batch: list[str]) -> tuple[np.ndarray, list[str]]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        rows = [torch.softmax(model(**tokenizer(t, return_tensors="pt", truncation=True)).logits[0], -1) for t in batch]
    return torch.stack(rows).double().numpy(), [model.config.id2label[i] for i in range(model.config.num_labels)]


def labelled(probabilities: np.ndarray, labels: list[str], rng: random.Random) -> list[str]:
    """The model's label three times in four, else a random one: a model right well above chance, not always."""
    return [labels[int(row.argmax())] if rng.random() < 0.75 else rng.choice(labels) for row in probabilities]


def check(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/drift/checks", headers=EVALUATOR, json=body)
    assert response.status_code == 202, response.text
    result = wait_for_check(client, response.json()["id"])
    assert result["status"] == "succeeded", result
    return result


def evaluate(client: TestClient, test_set: str) -> dict[str, Any]:
    created = client.post("/v1/evaluations", headers=EVALUATOR, json={"test_set": test_set})
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result: dict[str, Any] = client.get(f"/v1/evaluations/{created.json()['id']}", headers=EVALUATOR).json()
        if result["status"] in ("succeeded", "failed"):
            return result
        time.sleep(0.05)
    raise AssertionError("the evaluation did not finish")


def test_drift_checks_estimate_performance_from_the_served_versions_evaluation(
    serve: Callable[..., Any], classifier_dir: Path
) -> None:
    pool = texts(0)
    blind, live = pool[:160], pool[160:320]  # disjoint: the estimate is about traffic the maps never saw
    blind_probabilities, labels = direct_probabilities(classifier_dir, blind)
    live_probabilities, _ = direct_probabilities(classifier_dir, live)
    rng = random.Random(1)
    blind_truth, live_truth = labelled(blind_probabilities, labels, rng), labelled(live_probabilities, labels, rng)
    estimator = fit_estimator(labels, blind_probabilities, np.array([labels.index(t) for t in blind_truth]))
    expected = estimate_performance(estimator, live_probabilities, seed=0)

    with serve(classifier_dir, **SETTINGS) as client:
        start = iso(datetime.now(UTC))
        ids = []
        for chunk in range(0, len(live), 32):
            response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": live[chunk : chunk + 32]})
            assert response.status_code == 200, response.text
            ids += [p["id"] for p in response.json()["predictions"]]
        client.app.state.inference.flush_log()  # type: ignore[attr-defined]
        window = {"from": start, "to": iso(datetime.now(UTC))}
        model = response.json()["model"]
        assert client.post("/v1/drift/reference", headers=EVALUATOR, json=window).status_code == 201

        before = check(client, window)
        assert before["estimated_performance"] is None
        assert "no succeeded evaluation" in before["estimated_performance_reason"]
        assert samples(client.get("/metrics").text, "heldout_estimated_accuracy", {"model": model}) == []

        rows = [{"id": f"b{i}", "text": t, "label": y} for i, (t, y) in enumerate(zip(blind, blind_truth, strict=True))]
        uploaded(client, jsonl(rows), name="blind")
        evaluation = evaluate(client, "blind")
        assert evaluation["status"] == "succeeded", evaluation["error"]
        assert "performance_estimator" not in evaluation  # the fitted maps stay inside

        after = check(client, window)
        estimate = after["estimated_performance"]
        assert after["estimated_performance_reason"] is None
        assert estimate["rows"] == len(live) and estimate["evaluation"] == evaluation["id"]
        assert estimate["model_version"] == evaluation["model_version"]
        for name in ("accuracy", "f1"):
            ours = getattr(expected, name)
            assert estimate[name]["value"] == pytest.approx(ours.value, abs=1e-6), name
            assert estimate[name]["low"] == pytest.approx(ours.low, abs=1e-3), name
            assert estimate[name]["high"] == pytest.approx(ours.high, abs=1e-3), name

        text = client.get("/metrics").text
        gauges = {n: sample_value(text, f"heldout_estimated_{n}", {"model": model}) for n in ("accuracy", "f1")}
        assert gauges == pytest.approx({"accuracy": expected.accuracy.value, "f1": expected.f1.value}, abs=1e-6)

        items = [{"prediction_id": i, "label": y} for i, y in zip(ids, live_truth, strict=True)]
        online = client.post("/v1/feedback", headers=EVALUATOR, json={"items": items}).json()["online"][0]
        predicted = [labels[int(row.argmax())] for row in live_probabilities]
        realized = float(np.mean([p == y for p, y in zip(predicted, live_truth, strict=True)]))
        assert online["accuracy"] == pytest.approx(realized)
        # 160 predictions: the realized accuracy's own sampling spread is about 0.035.
        assert abs(estimate["accuracy"]["value"] - realized) < 0.1
