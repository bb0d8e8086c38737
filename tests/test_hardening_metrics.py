"""Bounded work and clean 4xx on the metrics endpoints (issue #12): deadline, concurrency cap,
list lengths counted before parsing, negative seeds, lone surrogates."""

import json
import random
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score
from starlette.requests import Request

from metrics.cancel import cancellable
from metrics.classification import classification_report
from service.app import create_app
from service.settings import Settings
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, score, uploaded

pytest_plugins = ["tests.fixtures_test_sets"]

JSON = {**auth("evaluator"), "Content-Type": "application/json"}


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def _post(client: TestClient, path: str, body: str | bytes) -> Any:
    return client.post(path, content=body.encode() if isinstance(body, str) else body, headers=JSON)


def _problem_fields(response: Any) -> list[str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return [e["field"] for e in response.json()["errors"]]


def _slow_generation(n: int = 20_000) -> str:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    hyps = [" ".join(rng.choices(words, k=20)) for _ in range(n)]
    refs = [" ".join(rng.choices(words, k=20)) for _ in range(n)]
    return json.dumps(
        {"hypotheses": hyps, "references": refs, "metrics": ["bleu", "chrf", "ter"], "n_resamples": 10_000}
    )


# -- negative seeds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/metrics/classification", {"predictions": [1, 0], "references": [1, 0], "seed": -1}),
        ("/v1/metrics/classification", {"predictions": [1, 0], "references": [1, 0], "seed": -1, "n_resamples": 0}),
        ("/v1/metrics/generation", {"hypotheses": ["a b"], "references": ["a b"], "seed": -5}),
        (
            "/v1/metrics/compare",
            {"task": "classification", "references": [1], "baseline": [1], "candidate": [0], "seed": -1},
        ),
        (
            "/v1/metrics/compare",
            {"task": "generation", "references": ["a"], "baseline": ["a"], "candidate": ["b"], "seed": -1},
        ),
    ],
)
def test_negative_seed_is_422_naming_it(client: TestClient, path: str, body: dict[str, Any]) -> None:
    response = _post(client, path, json.dumps(body))
    assert response.status_code == 422, response.text
    assert all(field.endswith("seed") for field in _problem_fields(response))


def test_negative_seed_is_refused_by_the_metric_function_too() -> None:
    from metrics.errors import MetricInputError

    with pytest.raises(MetricInputError, match="seed"):
        classification_report([1, 0], [1, 0], seed=-1)


# -- lone surrogates --------------------------------------------------------------------------------

LONE = "\udc00"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/metrics/classification", {"predictions": [LONE, "a"], "references": ["a", "a"]}, "predictions.0"),
        ("/v1/metrics/classification", {"predictions": ["a"], "references": ["a"], "labels": ["\ud800"]}, "labels.0"),
        ("/v1/metrics/classification", {"predictions": [["a"]], "references": [["a", LONE]]}, "references.0.1"),
        ("/v1/metrics/generation", {"hypotheses": [LONE], "references": ["a"]}, "hypotheses.0"),
        (
            "/v1/metrics/compare",
            {"task": "classification", "references": ["a"], "baseline": [LONE], "candidate": ["a"]},
            "baseline.0",
        ),
    ],
)
def test_lone_surrogate_is_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape "\udc00"
    assert "\\udc00" in raw or "\\ud800" in raw
    response = _post(client, path, raw)
    assert response.status_code == 422, response.text
    assert _problem_fields(response) == [field]


def test_escaped_surrogate_pairs_are_valid_text_and_scored_as_sklearn_does(client: TestClient) -> None:
    rng = random.Random(3)
    labels = ["😀", "🐍", "x"]
    truth = [rng.choice(labels) for _ in range(60)]
    predicted = [rng.choice(labels) for _ in range(60)]
    raw = json.dumps({"predictions": predicted, "references": truth, "n_resamples": 0})
    assert "\\ud83d" in raw
    response = _post(client, "/v1/metrics/classification", raw)
    assert response.status_code == 200, response.text
    assert response.json()["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert response.json()["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_lone_surrogate_in_test_set_predictions_is_422(client: TestClient) -> None:
    rows = [{"id": f"e{i}", "text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    body = uploaded(client, jsonl(rows), name="surrogates")
    predictions = {r["id"]: r["label"] for r in rows}
    raw = json.dumps({"predictions": {**predictions, "e3": LONE}})
    response = client.post(f"/v1/test-sets/{body['id']}/scores", content=raw.encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert _problem_fields(response) == ["predictions.e3"]
    assert score(client, body["id"], predictions).status_code == 200


# -- list lengths before parsing --------------------------------------------------------------------


def test_over_long_list_is_refused_before_the_body_is_parsed(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(max_segments=1000)
    n = 1_000_000
    raw = json.dumps(
        {"predictions": [f"label{i:07d}" for i in range(n)], "references": [f"label{i:07d}" for i in range(n)]}
    ).encode()
    parsed: list[int] = []
    original = Request.json

    async def spy(self: Request) -> Any:
        parsed.append(1)
        return await original(self)

    monkeypatch.setattr(Request, "json", spy)
    tracemalloc.start()
    try:
        response = _post(client, "/v1/metrics/classification", raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.text
    assert _problem_fields(response) == ["predictions"]
    assert "1000000 items exceed HELDOUT_MAX_SEGMENTS (1000)" in response.json()["detail"]
    assert parsed == []
    # Parsing alone would build 2M strings (over 100 MB of Python objects); the scan needs a fraction.
    assert peak < 3 * len(raw), (peak, len(raw))

    small = json.dumps({"predictions": ["a"] * 1000, "references": ["a"] * 1000, "n_resamples": 0})
    assert _post(client, "/v1/metrics/classification", small).status_code == 200


def test_a_long_list_nested_in_a_field_is_named_by_that_field(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_segments=10)
    body = {"hypotheses": ["a"], "references": [["a, b, c"] * 11], "n_resamples": 0}
    response = _post(client, "/v1/metrics/generation", json.dumps(body))
    assert response.status_code == 413, response.text
    assert _problem_fields(response) == ["references"]
    commas_in_strings = {"hypotheses": ["a, b, c, d, e, f, g, h, i, j, k, l"], "references": ["a"], "n_resamples": 0}
    assert _post(client, "/v1/metrics/generation", json.dumps(commas_in_strings)).status_code == 200


# -- deadline and concurrency -----------------------------------------------------------------------


def test_checkpoints_stop_a_metric_computation_between_chunks() -> None:
    calls: list[int] = []

    class Stop(Exception):
        pass

    def check() -> None:
        calls.append(1)
        if len(calls) >= 3:
            raise Stop

    rng = random.Random(1)
    truth = [rng.choice("abcdefgh") for _ in range(5000)]
    with cancellable(check), pytest.raises(Stop):
        classification_report(truth, truth[::-1], n_resamples=500_000, max_resamples=None)
    assert len(calls) == 3


def _slots_in_use(client: TestClient) -> int:
    slots = getattr(client.app.state, "metric_slots", None)  # type: ignore[attr-defined]
    return 0 if slots is None else len(slots._deadlines)


def test_deadline_answers_503_and_stops_the_computation(make_client: Callable[..., TestClient]) -> None:
    client = make_client(metrics_timeout_s=0.5)
    started = time.monotonic()
    response = _post(client, "/v1/metrics/generation", _slow_generation())
    assert response.status_code == 503, response.text[:300]
    assert "HELDOUT_METRICS_TIMEOUT_S" in response.json()["detail"]
    # The worker thread returns at its next checkpoint and frees its slot, long before the full
    # computation (about 15 s here, on one worker) could have finished.
    while _slots_in_use(client) and time.monotonic() - started < 6:
        time.sleep(0.05)
    assert _slots_in_use(client) == 0


def test_past_the_concurrency_cap_429_with_retry_after(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_concurrent_metrics=1, metrics_timeout_s=5)
    first: list[int] = []
    thread = threading.Thread(
        target=lambda: first.append(_post(client, "/v1/metrics/generation", _slow_generation()).status_code)
    )
    thread.start()
    deadline = time.monotonic() + 20
    while _slots_in_use(client) == 0 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert _slots_in_use(client) == 1
    second = _post(client, "/v1/metrics/classification", json.dumps({"predictions": [1], "references": [1]}))
    thread.join()
    assert second.status_code == 429, second.text
    assert 1 <= int(second.headers["Retry-After"]) <= 5
    assert first in ([200], [503])
    while _slots_in_use(client) and time.monotonic() < deadline + 20:
        time.sleep(0.05)
    again = _post(client, "/v1/metrics/classification", json.dumps({"predictions": [1], "references": [1]}))
    assert again.status_code == 200, again.text
