"""The generalization gap: the unpaired bootstrap against scikit-learn on materialised resamples, the seeded
training sample kept at upload (never released), and evaluations reporting train - test gaps and overfitting
against the model's direct predictions, with the Prometheus series."""

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from metrics.classification.report import score_draws
from metrics.generalization import Gap, overfits, unpaired_gap
from service.tasks import Task
from service.test_sets.training import TrainingSample
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, run_evaluation, upload, uploaded
from tests.inference_fixtures import CLASSIFIER_LABELS
from tests.prometheus_text import sample_value
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]
FAST = {"evaluation_shard_size": 16, "evaluation_poll_s": 0.05, "scoring_resamples": 300}


def test_the_unpaired_gap_matches_sklearn_on_independent_resamples() -> None:
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    train_ref = rng.choice(labels, 150).tolist()
    train_pred = [r if rng.random() < 0.9 else rng.choice(labels) for r in train_ref]
    test_ref = rng.choice(labels, 200).tolist()
    test_pred = [r if rng.random() < 0.6 else rng.choice(labels) for r in test_ref]
    n = 2000
    train_point, train_draws = score_draws(train_pred, train_ref, labels=labels, n_resamples=n, seed=0)
    test_point, test_draws = score_draws(test_pred, test_ref, labels=labels, n_resamples=n, seed=1)
    gaps = unpaired_gap(train_point, train_draws, test_point, test_draws, 0.95)

    def f1(pred: list[str], ref: list[str]) -> float:
        return float(f1_score(ref, pred, labels=labels, average="macro", zero_division=0))

    assert gaps["f1"].value == pytest.approx(f1(train_pred, train_ref) - f1(test_pred, test_ref), abs=1e-12)
    assert gaps["accuracy"].value == pytest.approx(
        accuracy_score(train_ref, train_pred) - accuracy_score(test_ref, test_pred), abs=1e-12
    )
    oracle = np.random.default_rng(7)
    materialised = []
    for _ in range(n):
        a = oracle.integers(0, len(train_ref), len(train_ref))
        b = oracle.integers(0, len(test_ref), len(test_ref))
        materialised.append(
            f1([train_pred[i] for i in a], [train_ref[i] for i in a])
            - f1([test_pred[i] for i in b], [test_ref[i] for i in b])
        )
    low, high = np.quantile(materialised, [0.025, 0.975])
    # Two independent bootstraps of 2000 resamples: their 2.5% and 97.5% quantiles agree to Monte Carlo error.
    assert gaps["f1"].low == pytest.approx(low, abs=0.015)
    assert gaps["f1"].high == pytest.approx(high, abs=0.015)


def test_overfitting_is_the_lower_bound_past_the_margin_in_the_better_direction() -> None:
    assert overfits(Gap(0.2, 0.06, 0.3, 0.95), 0.05)
    assert not overfits(Gap(0.2, 0.04, 0.3, 0.95), 0.05)
    assert overfits(Gap(-20.0, -30.0, -8.0, 0.95), 0.05, scale=100.0, lower_is_better=True)  # TER, 0-100
    assert not overfits(Gap(-20.0, -30.0, -4.0, 0.95), 0.05, scale=100.0, lower_is_better=True)
    assert not overfits(Gap(0.2, float("nan"), float("nan"), 0.95), 0.05)


def test_the_training_sample_is_a_seeded_reservoir_of_labelled_records() -> None:
    rows = [{"text": f"t{i}", "label": ["a", "b"][i % 2]} for i in range(500)] + [{"text": "no label"}]

    def sample(capacity: int) -> TrainingSample:
        kept = TrainingSample(Task.classification, capacity)
        for row in rows:
            kept.offer(str(row["text"]), row)
        return kept

    first, again = sample(40), sample(40)
    assert first.labelled == 500 and len(first.kept) == 40
    assert first.kept == again.kept  # seeded: the same upload keeps the same sample
    assert len({text for text, _ in first.kept}) == 40
    assert max(int(text[1:]) for text, _ in first.kept) > 250  # late records get their chance too
    assert len(sample(1000).kept) == 500
    generation = TrainingSample(Task.generation, 5)
    generation.offer("x", {"source": "x", "reference": "y"})
    generation.offer("z", {"source": "z", "references": ["a", 3]})
    assert generation.kept == [("x", ["y"])]


def direct_labels(model_dir: Path, texts: list[str]) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = [model(**tokenizer(t, return_tensors="pt", truncation=True)).logits[0] for t in texts]
    return [model.config.id2label[int(row.argmax())] for row in logits]


def macro(truth: list[str], predicted: list[str]) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        truth, predicted, average="macro", labels=CLASSIFIER_LABELS, zero_division=0
    )
    return {"accuracy": accuracy_score(truth, predicted), "precision": p, "recall": r, "f1": f}



def test_evaluations_report_the_gap_of_the_models_direct_predictions(
    serve: Callable[..., Any], classifier_dir: Path
) -> None:
    rng = random.Random(3)
    texts = [" ".join(rng.sample(SENTENCES, 3)) for _ in range(220)]
    test_texts, train_texts = texts[:100], texts[100:]
    test_truth = [rng.choice(CLASSIFIER_LABELS) for _ in test_texts]
    # The training labels are what the model predicts: the picture of a model that memorised its training data.
    train_truth = direct_labels(classifier_dir, train_texts)
    test_predicted = direct_labels(classifier_dir, test_texts)
    rows = [{"id": f"t{i}", "text": t, "label": y} for i, (t, y) in enumerate(zip(test_texts, test_truth, strict=True))]
    training = [{"text": t, "label": y} for t, y in zip(train_texts, train_truth, strict=True)]
    training += [{"text": "a line without a label"}, {"text": "a multilabel line", "label": ["negative"]}]
    with serve(classifier_dir, **FAST) as client:
        files = {"training_file": ("train.jsonl", jsonl(training))}
        test_set = uploaded(client, jsonl(rows), name="memorised", extra_files=files)
        assert test_set["audit"]["training_sample"] == {"labelled": 121, "kept": 120}  # the list label does not fit
        inputs = client.get(f"/v1/test-sets/{test_set['id']}/inputs?limit=1000", headers=auth("reader")).json()
        assert inputs["total"] == 100 and {item["id"] for item in inputs["items"]} == {r["id"] for r in rows}
        assert test_set["audit"]["training_sample"].keys() == {"labelled", "kept"}

        plain = uploaded(client, jsonl(rows), name="no-training")
        refused = client.post(
            "/v1/evaluations", headers=auth("evaluator"), json={"test_set": plain["id"], "generalization_gap": True}
        )
        assert refused.status_code == 422 and "generalization_gap" in refused.text

        result = run_evaluation(client, {"test_set": "memorised", "generalization_gap": True})
        assert result["status"] == "succeeded", result["error"]
        assert result["progress"] == {"done": 220, "total": 220}
        text = client.get("/metrics").text
        compared = client.post(
            "/v1/evaluations/compare",
            headers=auth("evaluator"),
            json={"baseline": result["id"], "candidate": result["id"], "n_resamples": 50},
        )
        assert compared.status_code == 200, compared.text

    expected_test, expected_train = macro(test_truth, test_predicted), macro(train_truth, train_truth)
    assert result["metrics"] == pytest.approx(expected_test, abs=1e-12)
    generalization = result["generalization"]
    assert generalization["train_size"] == 120 and generalization["metric"] == "f1"
    assert generalization["train_metrics"] == pytest.approx(expected_train, abs=1e-12)
    for name, gap in generalization["gap"].items():
        assert gap["value"] == pytest.approx(expected_train[name] - expected_test[name], abs=1e-12)
        assert gap["low"] <= gap["value"] <= gap["high"] and gap["level"] == 0.95
    assert generalization["gap"]["f1"]["low"] > 0.05 and generalization["overfitting"] is True
    labels = {"model": result["model"], "model_version": result["model_version"], "test_set": "memorised"}
    assert sample_value(text, "heldout_generalization_gap", labels | {"metric": "f1"}) == pytest.approx(
        generalization["gap"]["f1"]["value"]
    )


def test_no_overfitting_when_training_and_blind_scores_agree(serve: Callable[..., Any], classifier_dir: Path) -> None:
    rng = random.Random(5)
    texts = [" ".join(rng.sample(SENTENCES, 3)) for _ in range(240)]
    rows = [{"id": f"t{i}", "text": t, "label": rng.choice(CLASSIFIER_LABELS)} for i, t in enumerate(texts[:120])]
    training = [{"text": t, "label": rng.choice(CLASSIFIER_LABELS)} for t in texts[120:]]
    with serve(classifier_dir, **FAST) as client:
        response = upload(client, jsonl(rows), name="fair", extra_files={"training_file": ("t.jsonl", jsonl(training))})
        assert response.status_code == 201, response.text
        result = run_evaluation(client, {"test_set": "fair", "generalization_gap": True})
    assert result["status"] == "succeeded", result["error"]
    gap = result["generalization"]["gap"]["f1"]
    assert gap["low"] < 0.05 and result["generalization"]["overfitting"] is False
