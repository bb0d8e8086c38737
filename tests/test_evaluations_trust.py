"""Evaluations and blind scoring beyond the headline metrics: calibration from the model's probabilities,
slices by record group under the blind-set privacy rules, the reliability diagram rendered in Chromium."""

import random
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, precision_recall_fscore_support
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.calibration_oracle import ece_by_definition
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, run_evaluation, score, uploaded
from tests.inference_fixtures import CLASSIFIER_LABELS
from tests.png_pixels import read_png
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]

FAST = {"evaluation_shard_size": 16, "evaluation_poll_s": 0.05, "scoring_resamples": 100, "min_slice_size": 10}
# Group sizes: two slices of their own; c and d (and the ungrouped) fall below 10 and pool into "other".
GROUPS = {"a": 40, "b": 30, "c": 6, "d": 5, None: 4}


def grouped_rows(seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for group, count in GROUPS.items():
        for _ in range(count):
            row = {
                "id": f"r{len(rows)}",
                "text": f"{rng.choice(SENTENCES)} {rng.choice(SENTENCES)}",
                "label": rng.choice(CLASSIFIER_LABELS),
            }
            rows.append(row if group is None else row | {"group": group})
    rng.shuffle(rows)
    return rows


def offline_probabilities(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """The model's softmax probabilities by a direct forward pass, and its labels in column order."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        rows = [torch.softmax(model(**tokenizer(t, return_tensors="pt", truncation=True)).logits[0], -1) for t in texts]
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    probs = torch.stack(rows).numpy().astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True), labels


def sklearn_scores(truth: list[Any], predicted: list[Any], labels: list[Any]) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="macro", labels=labels, zero_division=0)
    return {"accuracy": accuracy_score(truth, predicted), "precision": p, "recall": r, "f1": f}


def slice_members(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Positions per released slice: groups of at least 10, the rest (and ungrouped records) as "other"."""
    members: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        group = row.get("group")
        members.setdefault(group if group is not None and GROUPS[group] >= 10 else "other", []).append(i)
    return members


def expected_slices(rows: list[dict[str, Any]], predicted: list[str]) -> dict[str, dict[str, float]]:
    """sklearn on each slice, macro over the set's labels that the slice's references or predictions use."""
    out = {}
    for name, at in slice_members(rows).items():
        truth, preds = [rows[i]["label"] for i in at], [predicted[i] for i in at]
        used = [label for label in sorted(CLASSIFIER_LABELS) if label in truth or label in preds]
        out[name] = sklearn_scores(truth, preds, used)
    return out



def test_evaluation_reports_calibration_and_slices_of_the_models_predictions(
    serve: Callable[..., Any], classifier_dir: Path
) -> None:
    rows = grouped_rows()
    probs, labels = offline_probabilities(classifier_dir, [r["text"] for r in rows])
    predicted = [labels[j] for j in probs.argmax(axis=1)]
    truth = [r["label"] for r in rows]
    with serve(classifier_dir, **FAST) as client:
        test_set = uploaded(client, jsonl(rows), name="grouped")
        result = run_evaluation(client, {"test_set": "grouped"})
    assert result["status"] == "succeeded", result["error"]
    assert result["metrics"] == pytest.approx(sklearn_scores(truth, predicted, test_set["labels"]), abs=1e-12)

    calibration = result["calibration"]
    confidences = probs.max(axis=1)
    ece, bins = ece_by_definition(confidences, [p == t for p, t in zip(predicted, truth, strict=True)])
    order = sorted(labels)
    matrix = probs[:, [labels.index(label) for label in order]]
    assert calibration["ece"] == pytest.approx(ece, abs=1e-5)
    assert calibration["brier"] == pytest.approx(brier_score_loss(truth, matrix, labels=order), abs=1e-5)
    assert calibration["log_loss"] == pytest.approx(log_loss(truth, matrix, labels=order), abs=1e-5)
    assert [b["count"] for b in calibration["bins"]] == [count for count, _, _ in bins]
    for name in ("ece", "brier", "log_loss"):
        interval = calibration["confidence_intervals"][name]
        assert interval["low"] <= calibration[name] <= interval["high"]

    expected = expected_slices(rows, predicted)
    assert sorted(result["slices"]) == sorted(expected) == ["a", "b", "other"]
    for name, part in result["slices"].items():
        assert part["metrics"] == pytest.approx(expected[name], abs=1e-12), name
        assert part["support"] == len(slice_members(rows)[name])
        for interval in part["intervals"].values():
            assert interval["low"] <= interval["high"]
    worst = min(expected, key=lambda name: expected[name]["f1"])
    assert result["worst_slice"] == {"group": worst, "metric": "f1", "value": pytest.approx(expected[worst]["f1"])}


def test_open_scoring_releases_slices_and_the_ladder_never_does(db_client: TestClient) -> None:
    rows = grouped_rows(1)
    rng = random.Random(2)
    predictions = {r["id"]: rng.choice(CLASSIFIER_LABELS) for r in rows}
    predicted = [predictions[r["id"]] for r in rows]
    open_set = uploaded(db_client, jsonl(rows), name="open-grouped")
    ladder_set = uploaded(db_client, jsonl(rows), name="ladder-grouped", ladder=True)

    released = score(db_client, open_set["id"], predictions)
    assert released.status_code == 200, released.text
    slices = released.json()["slices"]
    # The default HELDOUT_MIN_SLICE_SIZE is 30: only a (40) and b (30) stand alone; the 15 others pool, and
    # as "other" is still below 30 it is withheld.
    assert sorted(slices) == ["a", "b"]
    expected = expected_slices(rows, predicted)
    for name in ("a", "b"):
        assert slices[name]["metrics"] == pytest.approx(expected[name], abs=1e-12)
        assert slices[name]["support"] == GROUPS[name]

    for role in ("evaluator", "admin"):
        body = score(db_client, ladder_set["id"], predictions, role=role).json()
        assert body["mode"] == "ladder"
        assert body["slices"] is None and body["worst_slice"] is None


def test_a_ladder_sets_evaluation_releases_no_slices(serve: Callable[..., Any], classifier_dir: Path) -> None:
    with serve(classifier_dir, **FAST) as client:
        uploaded(client, jsonl(grouped_rows()), name="guarded", ladder=True)
        result = run_evaluation(client, {"test_set": "guarded"})
        listed = client.get("/v1/evaluations", headers=auth("reader")).json()["items"]
    assert result["status"] == "succeeded", result["error"]
    assert result["slices"] is None and result["worst_slice"] is None
    assert all(item["slices"] is None for item in listed)


def test_groups_are_validated_and_stay_hidden(db_client: TestClient) -> None:
    rows = [{"id": "1", "text": "a", "label": "x", "group": 3}, {"id": "2", "text": "b", "label": "y", "group": " "}]
    response = db_client.post(
        "/v1/test-sets",
        headers=auth("admin"),
        data={"name": "bad", "task": "classification"},
        files={"file": ("s.jsonl", jsonl(rows))},
    )
    assert response.status_code == 422
    assert "'group' must be a string" in response.text and "'group' is blank" in response.text
    good = uploaded(db_client, jsonl(grouped_rows()), name="hidden")
    inputs = db_client.get(f"/v1/test-sets/{good['id']}/inputs", headers=auth("reader")).json()
    assert all(set(item) == {"id", "text"} for item in inputs["items"])
    assert "group" not in good["audit"].get("ignored_fields", [])


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_reliability_diagram_renders_in_headless_chromium(
    serve: Callable[..., Any], classifier_dir: Path, tmp_path: Path
) -> None:
    with serve(classifier_dir, **FAST) as client:
        uploaded(client, jsonl(grouped_rows()), name="drawn")
        result = run_evaluation(client, {"test_set": "drawn"})
        response = client.get(f"/v1/evaluations/{result['id']}/calibration.svg", headers=auth("reader"))
        missing = client.get("/v1/evaluations/999/calibration.svg", headers=auth("reader"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert missing.status_code == 404
    svg = response.text
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg.encode())
    filled = [b for b in result["calibration"]["bins"] if b["count"]]
    assert len(root.findall(".//svg:g[@class='bin']", ns)) == len(filled)
    counts = [int(t.text or 0) for t in root.findall(".//svg:text[@class='count']", ns)]
    assert counts == [b["count"] for b in filled]
    assert root.find(".//svg:line[@class='diagonal']", ns) is not None
    assert "href" not in svg and "<script" not in svg  # self-contained

    page = tmp_path / "diagram.svg"
    page.write_text(svg)
    shot = tmp_path / "diagram.png"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--window-size=520,440", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)  # type: ignore[arg-type]
    pixels = read_png(shot.read_bytes())[..., :3].astype(int)
    assert pixels.shape[:2] == (440, 520)
    bar = np.abs(pixels - [0x4C, 0x78, 0xA8]).sum(axis=-1) < 12
    assert bar.sum() > 200  # the accuracy bars were painted
    tallest = max(filled, key=lambda b: b["accuracy"] * b["count"] > 0 and b["accuracy"])
    column = int(64 + (tallest["lower"] + tallest["upper"]) / 2 * (496 - 64))
    painted = np.flatnonzero(bar[:, column])
    # Where confidence is below accuracy, the translucent gap covers the bar's top down to the confidence line.
    visible = min(tallest["accuracy"], tallest["confidence"])
    assert painted.size and abs(painted.min() - (336 - visible * 288)) <= 2
