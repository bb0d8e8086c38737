"""Scoring external predictions: metrics equal to scikit-learn and sacrebleu, 422s, budget, ladder, Prometheus."""

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sacrebleu
from fastapi.testclient import TestClient
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer
from sqlalchemy import create_engine, insert, select

from service.app import create_app
from service.db.models import ScoringSubmission, TestSet
from service.settings import Settings
from service.test_sets.config import GENERATION_METRICS
from tests.fixtures_test_sets import jsonl, score, uploaded
from tests.prometheus_text import total

pytest_plugins = ["tests.fixtures_test_sets"]

LABELS = ["cat", "dog", "eel"]


def classification_set(n: int, seed: int = 0, labels: list[Any] = LABELS) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"e{i}", "text": f"example {i}", "label": rng.choice(labels)} for i in range(n)]


def sklearn_scores(truth: list[Any], predicted: list[Any], **options: Any) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, zero_division=0, **options)
    return {"accuracy": accuracy_score(truth, predicted), "precision": p, "recall": r, "f1": f}


def test_classification_scores_match_sklearn(db_client: TestClient) -> None:
    rows = classification_set(300)
    body = uploaded(db_client, jsonl(rows))
    rng = random.Random(1)
    predicted = [r["label"] if rng.random() < 0.6 else rng.choice([*LABELS, "fox"]) for r in rows]
    response = score(db_client, body["id"], {r["id"]: p for r, p in zip(rows, predicted, strict=True)})
    assert response.status_code == 200, response.text
    result = response.json()
    expected = sklearn_scores([r["label"] for r in rows], predicted, average="macro", labels=LABELS)
    assert result["metrics"] == pytest.approx(expected, abs=1e-12)
    assert result["mode"] == "open" and result["budget_remaining"] is None
    assert result["test_set"] == {k: body[k] for k in ("id", "name", "version", "sha256")}
    assert set(result) == {"test_set", "mode", "metrics", "intervals", "budget_remaining", "slices", "worst_slice"}
    assert result["slices"] is None and result["worst_slice"] is None  # an ungrouped set has no slices
    for name, interval in result["intervals"].items():
        assert interval["level"] == 0.95 and interval["low"] <= expected[name] <= interval["high"]


def test_binary_and_integer_labels_from_csv_style_strings(db_client: TestClient) -> None:
    rows = classification_set(120, seed=2, labels=[0, 1])
    body = uploaded(db_client, jsonl(rows), average="binary", pos_label="1")
    rng = random.Random(3)
    predicted = [rng.choice([0, 1]) for _ in rows]
    as_text = {r["id"]: str(p) for r, p in zip(rows, predicted, strict=True)}
    result = score(db_client, body["id"], as_text).json()
    expected = sklearn_scores([r["label"] for r in rows], predicted, average="binary", pos_label=1)
    assert result["metrics"] == pytest.approx(expected, abs=1e-12)
    outside = score(db_client, body["id"], {**as_text, rows[0]["id"]: 7})
    assert outside.status_code == 422 and repr(rows[0]["id"]) in outside.json()["detail"]


def test_multilabel_scores_match_sklearn(db_client: TestClient) -> None:
    rng = random.Random(4)
    tags = ["a", "b", "c", "d"]
    rows = [{"id": i, "text": f"t{i}", "label": rng.sample(tags, rng.randrange(0, 3))} for i in range(150)]
    body = uploaded(db_client, jsonl(rows), average="micro")
    predicted = [rng.sample([*tags, "zz"], rng.randrange(0, 3)) for _ in rows]
    result = score(db_client, body["id"], {str(r["id"]): p for r, p in zip(rows, predicted, strict=True)}).json()
    binarizer = MultiLabelBinarizer(classes=[*tags, "zz"])
    truth, pred = binarizer.fit_transform([r["label"] for r in rows]), binarizer.transform(predicted)
    expected = sklearn_scores(truth, pred, average="micro", labels=list(range(len(tags))))
    assert result["metrics"] == pytest.approx(expected, abs=1e-12)


def test_generation_scores_match_sacrebleu_and_rouge_score(db_client: TestClient) -> None:
    rng = random.Random(5)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue", "runs", "running"]
    refs = [[" ".join(rng.choices(words, k=rng.randrange(4, 9))) for _ in range(2)] for _ in range(60)]
    rows = [{"id": f"s{i}", "source": f"source {i}", "references": r} for i, r in enumerate(refs)]
    body = uploaded(db_client, jsonl(rows), task="generation")
    stemmed = uploaded(db_client, jsonl(rows), task="generation", name="stemmed", rouge_stemmer=True)
    assert body["settings"]["rating_scale"] == [1.0, 5.0] and not body["settings"]["rouge_stemmer"]
    hyps = [" ".join(rng.choices(words, k=rng.randrange(3, 9))) for _ in rows]
    hyps[:5] = [r[1] for r in refs[:5]]
    predictions = {r["id"]: h for r, h in zip(rows, hyps, strict=True)}
    result = score(db_client, body["id"], predictions).json()
    streams = [list(s) for s in zip(*refs, strict=True)]
    assert result["metrics"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert result["metrics"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-9)
    assert result["metrics"]["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, streams).score, abs=1e-9)
    assert result["metrics"]["exact_match"] == pytest.approx(100 * 5 / 60, abs=1e-9)
    for stemmer, scored in ((False, result), (True, score(db_client, stemmed["id"], predictions).json())):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stemmer)
        theirs = [scorer.score_multi(r, h) for r, h in zip(refs, hyps, strict=True)]
        for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            mean_f = 100 * np.mean([s[name].fmeasure for s in theirs])
            assert scored["metrics"][name] == pytest.approx(mean_f, abs=1e-9)
    assert set(result["intervals"]) == set(result["metrics"]) == set(GENERATION_METRICS)
    wrong_type = score(db_client, body["id"], {r["id"]: 1 for r in rows})
    assert wrong_type.status_code == 422


def test_missing_unknown_and_malformed_predictions_are_422(db_client: TestClient) -> None:
    rows = classification_set(30)
    body = uploaded(db_client, jsonl(rows))
    predictions = {r["id"]: r["label"] for r in rows}
    del predictions["e3"], predictions["e7"]
    predictions["nope"] = "cat"
    response = score(db_client, body["id"], predictions)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "missing ids: 'e3', 'e7'" in detail and "unknown ids: 'nope'" in detail
    listed = score(db_client, body["id"], {r["id"]: [r["label"]] for r in rows})
    assert listed.status_code == 422
    assert score(db_client, body["id"], {"e1": None}).status_code == 422  # type: ignore[dict-item]
    assert score(db_client, 999, {"e1": "cat"}).status_code == 404
    assert score(db_client, body["id"], {r["id"]: r["label"] for r in rows}, role="reader").status_code == 403


def test_daily_budget_per_key(db_client: TestClient) -> None:
    rows = classification_set(20)
    body = uploaded(db_client, jsonl(rows), daily_budget=2)
    good = {r["id"]: r["label"] for r in rows}
    assert score(db_client, body["id"], {"e0": "cat"}).status_code == 422  # invalid: costs nothing
    assert [score(db_client, body["id"], good).json()["budget_remaining"] for _ in range(2)] == [1, 0]
    refused = score(db_client, body["id"], good)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 86400
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert score(db_client, body["id"], good, role="admin").json()["budget_remaining"] == 1


def test_budget_holds_under_concurrent_submissions(db_client: TestClient) -> None:
    rows = classification_set(50)
    body = uploaded(db_client, jsonl(rows), daily_budget=3)
    good = {r["id"]: r["label"] for r in rows}
    statuses: list[int] = []

    def submit() -> None:
        statuses.append(score(db_client, body["id"], good).status_code)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 429, 429, 429]


def test_ladder_moves_only_on_a_significant_improvement(db_client: TestClient) -> None:
    rng = random.Random(6)
    rows = classification_set(400, seed=6, labels=["x", "y"])
    truth = [r["label"] for r in rows]
    body = uploaded(db_client, jsonl(rows), ladder=True, ladder_metric="accuracy", ladder_step=0.01)

    def with_correct(k: int) -> list[str]:
        chosen = set(rng.sample(range(len(rows)), k))
        return [t if i in chosen else ("y" if t == "x" else "x") for i, t in enumerate(truth)]

    def submit(predicted: list[str]) -> dict[str, Any]:
        result = score(db_client, body["id"], {r["id"]: p for r, p in zip(rows, predicted, strict=True)})
        assert result.status_code == 200, result.text
        assert result.json()["mode"] == "ladder"
        return result.json()  # type: ignore[no-any-return]

    first_predictions = with_correct(250)
    first = submit(first_predictions)
    assert first["metrics"]["accuracy"] == round(accuracy_score(truth, first_predictions), 2)
    assert all(round(v * 100, 6).is_integer() for v in first["metrics"].values())
    slightly_better = list(first_predictions)
    wrong = next(i for i, (p, t) in enumerate(zip(first_predictions, truth, strict=True)) if p != t)
    slightly_better[wrong] = truth[wrong]
    assert submit(slightly_better) == first
    assert submit(with_correct(200)) == first
    much_better = with_correct(330)
    improved = submit(much_better)
    assert improved["metrics"]["accuracy"] == round(accuracy_score(truth, much_better), 2)
    assert improved["metrics"]["accuracy"] > first["metrics"]["accuracy"]
    assert submit(with_correct(331)) == improved


def test_submission_counter_and_its_restore_from_the_database(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    rows = classification_set(20)
    app = create_app(make_settings(database_url=database_url, scoring_resamples=100))
    with TestClient(app, raise_server_exceptions=False) as client:
        name = f"counted-{random.Random().randrange(10**9)}"
        body = uploaded(client, jsonl(rows), name=name, daily_budget=1)
        good = {r["id"]: r["label"] for r in rows}
        score(client, body["id"], good)
        score(client, body["id"], good)
        metrics = client.get("/metrics").text
        assert total(metrics, "heldout_scoring_submissions_total", {"test_set": name, "outcome": "scored"}) == 1
        assert total(metrics, "heldout_scoring_submissions_total", {"test_set": name, "outcome": "over_budget"}) == 1

    # Another process scored a set this one never saw: its counts come back from the database at start.
    engine = create_engine(database_url)
    other = f"restored-{random.Random().randrange(10**9)}"
    with engine.begin() as conn:
        set_id = conn.execute(
            insert(TestSet)
            .values(
                name=other,
                version=1,
                task="classification",
                size=0,
                n_bytes=0,
                multilabel=False,
                settings={},
                created_by="k",
                created_at=datetime.now(UTC),
            )
            .returning(TestSet.id)
        ).scalar_one()
        conn.execute(
            insert(ScoringSubmission),
            [
                {"test_set_id": set_id, "key_id": "k", "outcome": o, "created_at": datetime.now(UTC)}
                for o in ["scored"] * 4 + ["over_budget"] * 2
            ],
        )
        assert conn.execute(select(TestSet.name).where(TestSet.id == set_id)).scalar() == other
    engine.dispose()
    with TestClient(create_app(make_settings(database_url=database_url)), raise_server_exceptions=False) as client:
        metrics = client.get("/metrics").text
    assert total(metrics, "heldout_scoring_submissions_total", {"test_set": other, "outcome": "scored"}) == 4
    assert total(metrics, "heldout_scoring_submissions_total", {"test_set": other, "outcome": "over_budget"}) == 2
