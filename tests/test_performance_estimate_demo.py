"""CBPE on the real demo model (slow: the demo build takes minutes on a CPU; set HELDOUT_TEST_DEMO_DATA_DIR to a
data dir that already holds it): maps fitted on one half of its held-out split, estimates on the other half,
disjoint from it, and on a covariate-shifted part of it, each within 0.05 of the realized accuracy."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from metrics.performance_estimation import estimate_performance, fit_estimator
from service.inference.demo import ensure_demo_model
from service.inference.demo_data import TEST_SET_FILE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = os.environ.get("HELDOUT_TEST_DEMO_DATA_DIR")
    return ensure_demo_model(Path(data_dir) if data_dir else tmp_path_factory.mktemp("demo-data"))


def probabilities(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], return_tensors="pt", padding=True, truncation=True)
            rows.append(torch.softmax(model(**batch).logits, -1))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return torch.cat(rows).double().numpy(), labels


def test_the_estimate_is_within_five_points_of_realized_accuracy_on_disjoint_traffic(demo_dir: Path) -> None:
    rows = [json.loads(line) for line in (demo_dir / TEST_SET_FILE).read_text().splitlines()]
    random.Random(0).shuffle(rows)  # the drift demo's split
    probs, labels = probabilities(demo_dir, [r["text"] for r in rows])
    truth = np.array([labels.index(r["label"]) for r in rows])
    half = len(rows) // 2
    estimator = fit_estimator(labels, probs[:half], truth[:half])
    live, live_truth = probs[half:], truth[half:]
    words = np.array([len(r["text"].split()) for r in rows[half:]])
    windows = {"disjoint": np.ones(len(live), dtype=bool), "longer half": words > np.median(words)}
    for name, keep in windows.items():
        estimate = estimate_performance(estimator, live[keep])
        realized = float((live[keep].argmax(axis=1) == live_truth[keep]).mean())
        assert abs(estimate.accuracy.value - realized) < 0.05, (name, estimate.accuracy, realized)
