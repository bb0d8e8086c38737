"""The Ladder releases one loss: probing blind labels through the other metrics learns nothing (issue #12).

The attack: with a fresh evaluator key per probe, submit "a" everywhere except "b" at the probed id.
Macro precision then moves by about 0.5 with that id's hidden label (class "b" precision is 1 or 0),
so any release of it hands out the label. Under the Ladder the released report must be the same
bytes whatever the probed labels are, which makes recovering them exactly chance.

The ladder metric itself moves by about 2/N with the probed label; it hides that only while its
rounding absorbs it. The set here is checked (against scikit-learn) to sit clear of a rounding
boundary for every probe, so the test isolates the leak through the other metrics. A score right at
a boundary still leaks one label per fresh key: keys are the budget an attacker spends.
"""

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from service.app import create_app
from service.settings import Settings
from tests.conftest import KEYS, env_keys
from tests.fixtures_test_sets import jsonl, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

N = 1000
PROBES = 8
STEP = 0.05
PROBE_KEYS = [f"probe-key-{i}" for i in range(PROBES)]


@pytest.fixture
def probe_client(database_url: str, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """An app with one fresh evaluator key per probe, besides the usual test keys."""
    keys = env_keys() + "".join(f",evaluator:{key}" for key in PROBE_KEYS)
    app = create_app(make_settings(database_url=database_url, scoring_resamples=200, api_keys=keys))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _labels() -> list[str]:
    rng = random.Random(12)
    return [rng.choice("ab") for _ in range(N)]


def _probes(labels: list[str]) -> list[int]:
    """Half the probes on each hidden label, so a label-dependent release cannot pass unnoticed."""
    rng = random.Random(13)
    a = rng.sample([i for i, t in enumerate(labels) if t == "a"], PROBES // 2)
    b = rng.sample([i for i, t in enumerate(labels) if t == "b"], PROBES // 2)
    return [x for pair in zip(a, b, strict=True) for x in pair]


def _probe_vector(probe: int) -> dict[str, str]:
    return {f"q{i}": "b" if i == probe else "a" for i in range(N)}


def _rounded_f1(labels: list[str], probe: int, hidden: str) -> float:
    truth = [hidden if i == probe else t for i, t in enumerate(labels)]
    predicted = ["b" if i == probe else "a" for i in range(N)]
    _, _, f1, _ = precision_recall_fscore_support(truth, predicted, average="macro", zero_division=0)
    return round(float(f1) / STEP) * STEP


def _post(client: TestClient, set_id: int, key: str, predictions: dict[str, Any]) -> bytes:
    response = client.post(
        f"/v1/test-sets/{set_id}/scores",
        headers={"Authorization": f"Bearer {key}"},
        json={"predictions": predictions},
    )
    assert response.status_code == 200, response.text
    return response.content


def test_single_label_probes_with_fresh_keys_get_identical_ladder_releases(probe_client: TestClient) -> None:
    labels = _labels()
    rows = [{"id": f"q{i}", "text": f"item {i}", "label": t} for i, t in enumerate(labels)]
    body = uploaded(probe_client, jsonl(rows), ladder=True, ladder_step=STEP)
    probes = _probes(labels)
    assert all(_rounded_f1(labels, p, "a") == _rounded_f1(labels, p, "b") for p in probes)

    released = [_post(probe_client, body["id"], k, _probe_vector(p)) for k, p in zip(PROBE_KEYS, probes, strict=True)]

    assert len(set(released)) == 1, [labels[p] for p in probes]
    assert sorted(labels[p] for p in probes) == ["a"] * (PROBES // 2) + ["b"] * (PROBES // 2)


def test_ladder_releases_its_metric_to_evaluators_and_everything_to_admins(probe_client: TestClient) -> None:
    labels = _labels()
    rows = [{"id": f"q{i}", "text": f"item {i}", "label": t} for i, t in enumerate(labels)]
    body = uploaded(probe_client, jsonl(rows), ladder=True, ladder_metric="recall")
    rng = random.Random(14)
    predicted = [t if rng.random() < 0.7 else rng.choice("ab") for t in labels]
    predictions = {f"q{i}": p for i, p in enumerate(predicted)}
    p, r, f, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    expected = {"accuracy": accuracy_score(labels, predicted), "precision": p, "recall": r, "f1": f}

    evaluator = json.loads(_post(probe_client, body["id"], PROBE_KEYS[0], predictions))
    assert evaluator["mode"] == "ladder"
    assert evaluator["metrics"] == {"recall": round(r, 2)}
    assert set(evaluator["intervals"]) == {"recall"}

    admin = json.loads(_post(probe_client, body["id"], KEYS["admin"], predictions))
    assert admin["metrics"] == {name: pytest.approx(round(value, 2), abs=1e-9) for name, value in expected.items()}
    assert set(admin["intervals"]) == set(expected)


def test_open_mode_still_releases_every_metric(probe_client: TestClient) -> None:
    labels = _labels()
    rows = [{"id": f"q{i}", "text": f"item {i}", "label": t} for i, t in enumerate(labels)]
    body = uploaded(probe_client, jsonl(rows))
    released = json.loads(_post(probe_client, body["id"], PROBE_KEYS[0], _probe_vector(0)))
    assert set(released["metrics"]) == {"accuracy", "precision", "recall", "f1"}
