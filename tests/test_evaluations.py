"""Evaluation jobs over HTTP: lifecycle, results against offline runs of the model, extra metrics, compare,
errors, and the Prometheus series; on SQLite and PostgreSQL."""

import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer
from sqlalchemy import func, select
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from metrics.evaluate_modules import module_path
from service.db.models import PredictionLogEntry
from service.test_sets.config import GENERATION_METRICS
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, uploaded
from tests.fixtures_test_sets import run_evaluation as run
from tests.inference_fixtures import CLASSIFIER_LABELS, MULTI_LABELS
from tests.prometheus_text import sample_value, total
from tests.tiny_models import COPY_LETTERS, SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]

FAST = {"evaluation_shard_size": 7, "evaluation_poll_s": 0.05, "scoring_resamples": 100}


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": f"s{i}",
            "text": f"{rng.choice(SENTENCES)} {rng.choice(SENTENCES)}",
            "label": rng.choice(CLASSIFIER_LABELS),
        }
        for i in range(n)
    ]


def offline_logits(model_dir: Path, texts: list[str]) -> list[torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt", truncation=True)).logits[0] for t in texts]


def offline_labels(model_dir: Path, texts: list[str]) -> list[str]:
    labels = AutoModelForSequenceClassification.from_pretrained(model_dir).config.id2label
    return [labels[int(logits.argmax())] for logits in offline_logits(model_dir, texts)]


def sklearn_scores(truth: list[Any], predicted: list[Any], labels: list[Any]) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="macro", labels=labels, zero_division=0)
    return {"accuracy": accuracy_score(truth, predicted), "precision": p, "recall": r, "f1": f}


def served_predictions(text: str) -> float:
    """heldout_predictions_total over all labels (the registry outlives each app in this process)."""
    return total(text, "heldout_predictions_total")


@pytest.fixture
def perturbed_classifier(classifier_dir: Path, tmp_path: Path) -> Path:
    """The tiny classifier with a shifted head: another model version, with different predictions."""
    target = tmp_path / "tiny-sentiment-b"
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    with torch.no_grad():
        model.classifier.bias += torch.tensor([0.3, -0.2, 0.1])
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (classifier_dir / name).exists():
            shutil.copy(classifier_dir / name, target / name)
    return target


def test_lifecycle_result_and_series(database_url: str, serve: Callable[..., Any], classifier_dir: Path) -> None:
    rows = sentiment_rows(60)
    with serve(classifier_dir, database_url=database_url, **FAST) as client:
        test_set = uploaded(client, jsonl(rows), name="sentiment")
        served_before = served_predictions(client.get("/metrics").text)
        result = run(client, {"test_set": "sentiment"})
        assert result["status"] == "succeeded", result["error"]
        assert result["progress"] == {"done": 60, "total": 60}
        assert result["test_set"] == {k: test_set[k] for k in ("id", "name", "version", "sha256")}
        assert result["test_set_sha256"] == test_set["sha256"]
        model = client.get("/v1/models", headers=auth("reader")).json()["data"][0]
        assert result["model_version"] == model["version"]
        expected = sklearn_scores(
            [r["label"] for r in rows], offline_labels(classifier_dir, [r["text"] for r in rows]), test_set["labels"]
        )
        assert result["metrics"] == pytest.approx(expected, abs=1e-12)
        for interval in result["intervals"].values():
            assert interval["level"] == 0.95 and interval["low"] <= interval["high"]

        listed = client.get(f"/v1/evaluations?status=succeeded&test_set={test_set['id']}", headers=auth("reader"))
        assert [item["id"] for item in listed.json()["items"]] == [result["id"]]
        assert client.get("/v1/evaluations?status=failed", headers=auth("reader")).json()["total"] == 0
        assert client.get("/v1/evaluations/999", headers=auth("reader")).status_code == 404

        text = client.get("/metrics").text
        labels = {"model": result["model"], "model_version": result["model_version"], "test_set": "sentiment"}
        for metric, value in result["metrics"].items():
            assert sample_value(text, "heldout_evaluation_score", {**labels, "metric": metric}) == pytest.approx(value)
            interval = result["intervals"][metric]
            assert sample_value(text, "heldout_evaluation_score_lower", {**labels, "metric": metric}) == pytest.approx(
                interval["low"]
            )
            assert sample_value(text, "heldout_evaluation_score_upper", {**labels, "metric": metric}) == pytest.approx(
                interval["high"]
            )
        assert total(text, "heldout_evaluations_total", {"status": "succeeded"}) >= 1
        assert total(text, "heldout_evaluation_duration_seconds_count") >= 1
        # Scoring the blind set is not live traffic: nothing logged for drift or feedback, nothing counted.
        client.app.state.inference.flush_log()  # type: ignore[attr-defined]
        with client.app.state.db.session() as session:  # type: ignore[attr-defined]
            assert session.scalar(select(func.count()).select_from(PredictionLogEntry)) == 0
        assert served_predictions(text) == served_before
        served = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": [rows[0]["text"]]})
        assert served.status_code == 200
        client.app.state.inference.flush_log()  # type: ignore[attr-defined]
        with client.app.state.db.session() as session:  # type: ignore[attr-defined]
            assert session.scalar(select(func.count()).select_from(PredictionLogEntry)) == 1
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0 and not checked.stdout and not checked.stderr, checked.stdout + checked.stderr


def test_extra_metrics_and_compare(
    database_url: str, serve: Callable[..., Any], classifier_dir: Path, perturbed_classifier: Path
) -> None:
    rows = sentiment_rows(80, seed=1)
    truth = [r["label"] for r in rows]
    texts = [r["text"] for r in rows]
    accuracy_module = module_path("heldout_accuracy")
    options = {"database_url": database_url, "evaluate_modules": accuracy_module, **FAST}
    with serve(classifier_dir, **options) as client:
        test_set = uploaded(client, jsonl(rows), name="cmp")
        baseline = run(client, {"test_set": test_set["id"], "extra_metrics": [accuracy_module]})
        assert baseline["metrics"]["heldout_accuracy.accuracy"] == pytest.approx(baseline["metrics"]["accuracy"])
        not_allowed = client.post(
            "/v1/evaluations", headers=auth("evaluator"), json={"test_set": "cmp", "extra_metrics": ["/tmp/x.py"]}
        )
        assert not_allowed.status_code == 422 and not_allowed.json()["errors"][0]["field"] == "extra_metrics"
        other_version = uploaded(client, jsonl(rows[:40]), name="cmp")
        on_v2 = run(client, {"test_set": other_version["id"], "metrics": ["accuracy"]})
    with serve(perturbed_classifier, **options) as client:
        candidate = run(client, {"test_set": test_set["id"], "metrics": ["accuracy", "f1"]})
        assert candidate["model_version"] != baseline["model_version"]
        compared = client.post(
            "/v1/evaluations/compare",
            headers=auth("evaluator"),
            json={"baseline": baseline["id"], "candidate": candidate["id"], "n_resamples": 300},
        )
        assert compared.status_code == 200, compared.text
        refused = client.post(
            "/v1/evaluations/compare",
            headers=auth("evaluator"),
            json={"baseline": baseline["id"], "candidate": on_v2["id"]},
        )
    body = compared.json()
    assert set(body["results"]) == {"accuracy", "f1"}
    base_scores = sklearn_scores(truth, offline_labels(classifier_dir, texts), test_set["labels"])
    cand_scores = sklearn_scores(truth, offline_labels(perturbed_classifier, texts), test_set["labels"])
    for metric, paired in body["results"].items():
        assert paired["baseline"] == pytest.approx(base_scores[metric], abs=1e-12)
        assert paired["candidate"] == pytest.approx(cand_scores[metric], abs=1e-12)
        assert paired["delta"] == pytest.approx(cand_scores[metric] - base_scores[metric], abs=1e-12)
        assert 0 < paired["p_value"] <= 1 and paired["n_resamples"] == 300
    assert refused.status_code == 422 and "different test sets" in refused.json()["detail"]


def test_refusals(database_url: str, serve: Callable[..., Any], classifier_dir: Path) -> None:
    rows = sentiment_rows(10)
    generation = [{"id": i, "source": "a b", "reference": "a b"} for i in range(3)]
    with serve(None, database_url=database_url) as client:
        uploaded(client, jsonl(rows), name="s")
        no_model = client.post("/v1/evaluations", headers=auth("evaluator"), json={"test_set": "s"})
        assert no_model.status_code == 409 and "no model" in no_model.json()["detail"]
    with serve(classifier_dir, database_url=database_url, evaluation_worker=False) as client:
        uploaded(client, jsonl(generation), name="g", task="generation")

        def post(body: dict[str, Any], role: str = "evaluator") -> Any:
            return client.post("/v1/evaluations", headers=auth(role), json=body)

        assert post({"test_set": "g"}).status_code == 409
        assert post({"test_set": "nope"}).status_code == 404
        assert post({"test_set": 12345}).status_code == 404
        assert post({"test_set": "s", "metrics": ["bleu"]}).status_code == 422
        assert post({"test_set": "s", "max_new_tokens": 5}).status_code == 422
        assert post({"test_set": "s"}, role="reader").status_code == 403
        queued = post({"test_set": "s"})
        assert queued.status_code == 202
        waiting = client.post(
            "/v1/evaluations/compare",
            headers=auth("evaluator"),
            json={"baseline": queued.json()["id"], "candidate": queued.json()["id"]},
        )
        assert waiting.status_code == 409
        set_id = client.get("/v1/test-sets?name=s", headers=auth("reader")).json()["items"][0]["id"]
        assert client.delete(f"/v1/test-sets/{set_id}", headers=auth("admin")).status_code == 204
        failed = client.get(f"/v1/evaluations/{queued.json()['id']}", headers=auth("reader")).json()
        assert failed["status"] == "failed" and failed["error"] == "the test set was deleted"


def test_multilabel_and_generation_models(
    database_url: str, serve: Callable[..., Any], multilabel_dir: Path, copy_lm_dir: Path
) -> None:
    rng = random.Random(3)
    tagged = [{"id": i, "text": rng.choice(SENTENCES), "label": rng.sample(MULTI_LABELS, 2)} for i in range(30)]
    with serve(multilabel_dir, database_url=database_url, **FAST) as client:
        test_set = uploaded(client, jsonl(tagged), name="tags", average="micro")
        result = run(client, {"test_set": "tags"})
    assert result["status"] == "succeeded", result["error"]
    probabilities = [torch.sigmoid(logits) for logits in offline_logits(multilabel_dir, [r["text"] for r in tagged])]
    names = AutoModelForSequenceClassification.from_pretrained(multilabel_dir).config.id2label
    predicted = [[names[i] for i, p in enumerate(row.tolist()) if p > 0.5] for row in probabilities]
    binarizer = MultiLabelBinarizer(classes=MULTI_LABELS)
    truth_matrix, pred_matrix = binarizer.fit_transform([r["label"] for r in tagged]), binarizer.transform(predicted)
    p, r, f, _ = precision_recall_fscore_support(
        truth_matrix,
        pred_matrix,
        average="micro",
        labels=[MULTI_LABELS.index(x) for x in test_set["labels"]],
        zero_division=0,
    )
    assert result["metrics"] == pytest.approx(
        {"accuracy": accuracy_score(truth_matrix, pred_matrix), "precision": p, "recall": r, "f1": f}, abs=1e-12
    )

    prompts = [" ".join(rng.choice(COPY_LETTERS) for _ in range(4)) + " =" for _ in range(20)]
    copies = [{"id": i, "source": p, "reference": p[:-2]} for i, p in enumerate(prompts)]
    with serve(copy_lm_dir, database_url=database_url, **FAST) as client:
        uploaded(client, jsonl(copies), name="copy", task="generation")
        result = run(client, {"test_set": "copy", "max_new_tokens": 8})
        generated = client.post(
            "/v1/generate", headers=auth("evaluator"), json={"inputs": prompts, "max_new_tokens": 8}
        ).json()["outputs"]
    hypotheses = [g["text"] for g in generated]
    references = [[c["reference"] for c in copies]]
    assert result["status"] == "succeeded", result["error"]
    assert result["metrics"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, references).score, abs=1e-9)
    assert result["metrics"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, references).score, abs=1e-9)
    assert result["metrics"]["ter"] == pytest.approx(sacrebleu.corpus_ter(hypotheses, references).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
    rouge = [scorer.score(c["reference"], h) for c, h in zip(copies, hypotheses, strict=True)]
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert result["metrics"][name] == pytest.approx(100 * np.mean([s[name].fmeasure for s in rouge]), abs=1e-9)
    matches = [h.strip() == c["reference"].strip() for c, h in zip(copies, hypotheses, strict=True)]
    assert result["metrics"]["exact_match"] == pytest.approx(100 * np.mean(matches), abs=1e-9)
    assert set(result["intervals"]) == set(GENERATION_METRICS)
