"""POST /v1/metrics/compare with task "classification" on multilabel data: label lists per example."""

import random
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from metrics.significance import compare_classification
from tests.conftest import auth

TAGS = ["news", "sport", "tech", "art"]


def multilabel_body() -> dict[str, Any]:
    rng = random.Random(7)
    references = [rng.sample(TAGS, rng.randrange(0, 3)) for _ in range(300)]
    baseline = [r if rng.random() < 0.5 else rng.sample(TAGS, rng.randrange(0, 3)) for r in references]
    candidate = [r if rng.random() < 0.8 else rng.sample(TAGS, rng.randrange(0, 3)) for r in references]
    return {
        "task": "classification",
        "references": references,
        "baseline": baseline,
        "candidate": candidate,
        "metrics": ["accuracy", "f1"],
        "average": "micro",
        "n_resamples": 200,
        "seed": 3,
    }


def test_multilabel_compare_scores_like_sklearn_and_the_metrics_function(client: TestClient) -> None:
    body = multilabel_body()
    response = client.post("/v1/metrics/compare", headers=auth("evaluator"), json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    binarizer = MultiLabelBinarizer(classes=TAGS)
    truth = binarizer.fit_transform(body["references"])
    base, cand = binarizer.transform(body["baseline"]), binarizer.transform(body["candidate"])
    assert results["accuracy"]["baseline"] == pytest.approx(accuracy_score(truth, base), abs=1e-12)
    assert results["accuracy"]["candidate"] == pytest.approx(accuracy_score(truth, cand), abs=1e-12)
    assert results["f1"]["candidate"] == pytest.approx(f1_score(truth, cand, average="micro"), abs=1e-12)
    assert results["f1"]["p_value"] < 0.05 and results["f1"]["delta"] > 0
    direct = compare_classification(
        body["references"],
        body["baseline"],
        body["candidate"],
        metrics=body["metrics"],
        average="micro",
        n_resamples=200,
        seed=3,
    )
    for metric, result in direct.items():
        assert results[metric]["p_value"] == result.p_value
        assert results[metric]["candidate_interval"]["low"] == result.candidate_interval.low
        assert results[metric]["signature"] == result.signature


def test_multilabel_compare_refusals_name_the_field(client: TestClient) -> None:
    body = multilabel_body()
    binary = client.post("/v1/metrics/compare", headers=auth("evaluator"), json={**body, "average": "binary"})
    assert binary.status_code == 422 and binary.json()["errors"][0]["field"] == "average"
    mixed = client.post("/v1/metrics/compare", headers=auth("evaluator"), json={**body, "baseline": ["news"] * 300})
    assert mixed.status_code == 422 and mixed.json()["errors"][0]["field"] == "references"
