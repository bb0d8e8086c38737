"""Calibration (ECE, Brier, log loss, bins) and slices, against their definitions and scikit-learn, in
``metrics`` and over POST /v1/metrics/classification."""

import re
import warnings
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, precision_recall_fscore_support

from metrics.calibration import N_BINS
from metrics.classification import classification_report
from metrics.errors import MetricInputError
from metrics.slices import OTHER, group_positions, releasable
from tests.calibration_oracle import ece_by_definition
from tests.conftest import auth


def random_case(seed: int, n: int, k: int, *, int_labels: bool = False) -> dict[str, Any]:
    """Random probabilities (some sharp, some flat), predictions mostly their argmax, references loosely tied."""
    rng = np.random.default_rng(seed)
    labels: list[Any] = list(range(10, 10 + k)) if int_labels else [f"c{j}" for j in range(k)]
    concentration = rng.choice([0.3, 1.0, 5.0])
    probs = rng.dirichlet(np.full(k, concentration), size=n)
    predicted = probs.argmax(axis=1)
    flip = rng.random(n) < 0.1
    predicted[flip] = rng.integers(0, k, flip.sum())
    truth = np.where(rng.random(n) < probs.max(axis=1), probs.argmax(axis=1), rng.integers(0, k, n))
    return {
        "labels": labels,
        "probs": probs,
        "predictions": [labels[j] for j in predicted],
        "references": [labels[j] for j in truth],
        "rows": [{str(label): float(p) for label, p in zip(labels, row, strict=True)} for row in probs],
    }


def case_ece(case: dict[str, Any]) -> tuple[float, list[tuple[int, float | None, float | None]]]:
    labels = case["labels"]
    confidences = [row[labels.index(pred)] for row, pred in zip(case["probs"], case["predictions"], strict=True)]
    correct = [p == r for p, r in zip(case["predictions"], case["references"], strict=True)]
    return ece_by_definition(confidences, correct)


@pytest.mark.parametrize("seed", range(12))
def test_calibration_equals_its_definition_and_sklearn(seed: int) -> None:
    k = [2, 3, 5, 8][seed % 4]
    case = random_case(seed, n=40 + 37 * seed, k=k, int_labels=seed % 3 == 0)
    report = classification_report(case["predictions"], case["references"], probabilities=case["rows"])
    calibration = report.calibration
    assert calibration is not None
    ece, bins = case_ece(case)
    assert calibration.ece == pytest.approx(ece, abs=1e-12)
    for got, (count, confidence, accuracy) in zip(calibration.bins, bins, strict=True):
        assert got.count == count
        assert got.confidence == pytest.approx(confidence, abs=1e-12)
        assert got.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert [b.lower for b in calibration.bins] == pytest.approx([b / N_BINS for b in range(N_BINS)])
    # sklearn orders the matrix's columns by sorted label; ours follow the label order of the rows.
    order = sorted(case["labels"])
    matrix = case["probs"][:, [case["labels"].index(label) for label in order]]
    assert calibration.brier == pytest.approx(brier_score_loss(case["references"], matrix, labels=order), abs=1e-12)
    assert calibration.log_loss == pytest.approx(log_loss(case["references"], matrix, labels=order), abs=1e-12)


def test_bin_edges_are_closed_above_and_zero_goes_first() -> None:
    labels = ["a", "b"]
    confidences = [0.0, 1 / 15, 2 / 15, 0.5, 1.0]
    rows = [{"a": c, "b": 1 - c} for c in confidences]
    report = classification_report(["a"] * 5, ["a", "b", "a", "a", "b"], probabilities=rows, labels=labels)
    assert report.calibration is not None
    counts = [b.count for b in report.calibration.bins]
    assert counts[0] == 2 and counts[1] == 1 and counts[7] == 1 and counts[14] == 1


def test_calibration_intervals_resample_examples() -> None:
    """The bootstrap of the per-bin sums equals recomputing the scores on materialised resamples."""
    case = random_case(3, n=120, k=3)
    n_resamples, seed = 300, 11
    report = classification_report(
        case["predictions"], case["references"], probabilities=case["rows"], n_resamples=n_resamples, seed=seed
    )
    assert report.calibration is not None
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"ece": [], "brier": [], "log_loss": []}
    n = len(case["predictions"])
    order = sorted(case["labels"])
    matrix = case["probs"][:, [case["labels"].index(label) for label in order]]
    for _ in range(n_resamples):
        idx = np.bincount(rng.integers(0, n, size=n), minlength=n)
        pick = np.repeat(np.arange(n), idx)
        sub = {key: [case[key][i] for i in pick] for key in ("predictions", "references")}
        sub |= {"probs": case["probs"][pick], "labels": case["labels"]}
        draws["ece"].append(case_ece(sub)[0])
        refs = sub["references"]
        draws["brier"].append(brier_score_loss(refs, matrix[pick], labels=order))
        draws["log_loss"].append(log_loss(refs, matrix[pick], labels=order))
    for name, values in draws.items():
        interval = report.calibration.confidence_intervals[name]
        low, high = np.quantile(values, [0.025, 0.975])
        assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-9), name


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"a": 0.5, "b": 0.5}, {"a": 0.6, "b": 0.5}], "probabilities[1] sums to"),
        ([{"a": 0.5, "b": 0.5}, {"a": 1.0}], "probabilities[1] must name the same 2 labels"),
        ([{"a": 1.0}, {"a": 1.0}], "probabilities[0] lacks labels ['b']"),
        ([{"a": 0.5, "b": 0.5}, {"a": 0.5, "z": 0.5}], "probabilities[1] names label 'z'"),
        ([{"a": 1.5, "b": -0.5}, {"a": 0.5, "b": 0.5}], "probabilities[0]['a'] must be a number in [0, 1]"),
        ([{"a": 1.0, "b": 0.0}], "probabilities has 1 rows but there are 2 examples"),
    ],
)
def test_bad_probabilities_name_the_row(rows: list[dict[str, float]], message: str) -> None:
    with pytest.raises(MetricInputError, match=re.escape(message)) as caught:
        classification_report(["a", "b"], ["a", "a"], probabilities=rows)
    assert caught.value.field == "probabilities"


def test_extra_label_columns_and_multilabel_refusal() -> None:
    rows = [{"a": 0.7, "b": 0.2, "z": 0.1}, {"a": 0.1, "b": 0.8, "z": 0.1}]
    report = classification_report(["a", "b"], ["a", "a"], probabilities=rows)
    assert report.calibration is not None
    matrix = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    expected = brier_score_loss(["a", "a"], matrix, labels=["a", "b", "z"])
    assert report.calibration.brier == pytest.approx(expected, abs=1e-12)
    with pytest.raises(MetricInputError, match="single-label"):
        classification_report([["a"]], [["a"]], probabilities=[{"a": 1.0}])


def sklearn_report(predictions: list[Any], references: list[Any], average: str) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = precision_recall_fscore_support(references, predictions, average=average, zero_division=0)
    return {"accuracy": accuracy_score(references, predictions), "precision": p, "recall": r, "f1": f}


@pytest.mark.parametrize("seed", range(6))
def test_slices_equal_sklearn_on_each_group(seed: int) -> None:
    case = random_case(100 + seed, n=150, k=3 + seed % 3)
    rng = np.random.default_rng(seed)
    groups = [str(g) for g in rng.choice(["en", "de", "fr", "other", ""], size=150)]
    average = ["macro", "weighted", "micro"][seed % 3]
    report = classification_report(
        case["predictions"], case["references"], groups=groups, average=average, probabilities=case["rows"]
    )
    assert report.slices is not None and sorted(report.slices) == sorted(set(groups))
    for group, part in report.slices.items():
        at = [i for i, g in enumerate(groups) if g == group]
        preds = [case["predictions"][i] for i in at]
        refs = [case["references"][i] for i in at]
        expected = sklearn_report(preds, refs, average)
        assert {name: getattr(part, name) for name in expected} == pytest.approx(expected, abs=1e-12)
        assert part.support == len(at)
        assert part.calibration is not None
        order = sorted(case["labels"])
        matrix = case["probs"][at][:, [case["labels"].index(label) for label in order]]
        assert part.calibration.brier == pytest.approx(brier_score_loss(refs, matrix, labels=order), abs=1e-12)
        assert part.slices is None


def test_small_groups_pool_into_other() -> None:
    groups = ["a"] * 40 + ["b"] * 10 + ["c"] * 25 + ["other"] * 3
    pooled = releasable(group_positions(groups, len(groups)), 30)
    assert sorted(pooled) == ["a", OTHER]
    assert len(pooled[OTHER]) == 38
    assert sorted(releasable(group_positions(["a"] * 40 + ["b"] * 5, 45), 30)) == ["a"]
    with pytest.raises(MetricInputError, match=r"groups\[1\] must be a string"):
        group_positions(["a", 3], 2)
    with pytest.raises(MetricInputError, match="groups has 1 entries"):
        group_positions(["a"], 2)


def test_calibration_and_slices_over_http(client: TestClient) -> None:
    case = random_case(7, n=90, k=3)
    groups = ["x" if i % 3 else "y" for i in range(90)]
    body = {
        "predictions": case["predictions"],
        "references": case["references"],
        "probabilities": case["rows"],
        "groups": groups,
        "n_resamples": 200,
    }
    response = client.post("/v1/metrics/classification", headers=auth("evaluator"), json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    order = sorted(case["labels"])
    matrix = case["probs"][:, [case["labels"].index(label) for label in order]]
    calibration = data["calibration"]
    assert calibration["ece"] == pytest.approx(case_ece(case)[0], abs=1e-12)
    assert calibration["brier"] == pytest.approx(brier_score_loss(case["references"], matrix, labels=order), abs=1e-12)
    assert calibration["log_loss"] == pytest.approx(log_loss(case["references"], matrix, labels=order), abs=1e-12)
    assert len(calibration["bins"]) == N_BINS and sum(b["count"] for b in calibration["bins"]) == 90
    for name in ("ece", "brier", "log_loss"):
        interval = calibration["confidence_intervals"][name]
        assert interval["low"] <= calibration[name] <= interval["high"]
    assert sorted(data["slices"]) == ["x", "y"]
    for group, part in data["slices"].items():
        at = [i for i, g in enumerate(groups) if g == group]
        expected = sklearn_report([case["predictions"][i] for i in at], [case["references"][i] for i in at], "macro")
        assert {name: part[name] for name in expected} == pytest.approx(expected, abs=1e-12)
        assert part["support"] == len(at) and "slices" not in part
        assert part["calibration"]["ece"] is not None


def test_bad_probabilities_over_http_are_422_naming_the_row(client: TestClient) -> None:
    body = {"predictions": ["a", "b"], "references": ["a", "b"], "probabilities": [{"a": 1, "b": 0}, {"a": 0.3}]}
    response = client.post("/v1/metrics/classification", headers=auth("evaluator"), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "probabilities[1]" in response.text
    body = {"predictions": ["a", "b"], "references": ["a", "b"], "groups": ["g"]}
    response = client.post("/v1/metrics/classification", headers=auth("evaluator"), json=body)
    assert response.status_code == 422 and "groups" in response.text
