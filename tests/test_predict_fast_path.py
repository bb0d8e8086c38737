"""POST /v1/predict's fast path: the same answers as the FastAPI route, and every error still from the route."""

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.inference.batcher import Closing, DynamicBatcher, QueueFull, QueueTimeout, RunTimeout
from service.inference.engine import InferenceEngine
from service.middleware import UNMATCHED_ROUTE
from tests.conftest import auth
from tests.prometheus_text import samples
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

EVALUATOR = auth("evaluator")
# FastAPI parses any "+json" media type as JSON; the fast path takes only application/json.
THROUGH_ROUTE = {**EVALUATOR, "Content-Type": "application/vnd.heldout+json"}


def without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "predictions": [{k: v for k, v in p.items() if k != "id"} for p in body["predictions"]]}


def assert_close(actual: Any, expected: Any, path: str = "body") -> None:
    """Equal structure and strings; floats to pytest.approx's default tolerance (it takes no nesting)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected), path
    else:
        assert actual == expected, path


@pytest.mark.parametrize("model", ["classifier_dir", "multilabel_dir"])
@pytest.mark.parametrize("return_scores", [False, True])
def test_fast_answers_equal_the_routes(
    serve: ServeFactory, route_calls: list[str], request: pytest.FixtureRequest, model: str, return_scores: bool
) -> None:
    body = {"inputs": [*SENTENCES, " ".join(SENTENCES)], "return_scores": return_scores}
    with serve(request.getfixturevalue(model)) as client:
        fast = client.post("/v1/predict", headers=EVALUATOR, json=body)
        assert route_calls == []
        slow = client.post("/v1/predict", headers=THROUGH_ROUTE, content=fast.request.content)
        assert route_calls == ["/v1/predict"]
    assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    fast_body, slow_body = fast.json(), slow.json()
    assert_close(without_ids(fast_body), without_ids(slow_body))
    assert set(fast_body["predictions"][0]) == set(slow_body["predictions"][0])
    assert len({p["id"] for p in fast_body["predictions"] + slow_body["predictions"]}) == 2 * len(body["inputs"])


BAD_REQUESTS: list[tuple[str, dict[str, str], bytes, int]] = [
    ("no key", {}, b'{"inputs": ["a"]}', 401),
    ("unknown key", {"Authorization": "Bearer nope"}, b'{"inputs": ["a"]}', 401),
    ("reader key", auth("reader"), b'{"inputs": ["a"]}', 403),
    ("basic scheme", {"Authorization": "Basic abc"}, b'{"inputs": ["a"]}', 401),
    ("not json", EVALUATOR, b"inputs=a", 422),
    ("empty inputs", EVALUATOR, b'{"inputs": []}', 422),
    ("not strings", EVALUATOR, b'{"inputs": [1, {"a": 2}]}', 422),
    ("unknown field", EVALUATOR, b'{"inputs": ["a"], "top_k": 3}', 422),
    ("a list", EVALUATOR, b'["a"]', 422),
    ("no body", EVALUATOR, b"", 422),
]


@pytest.mark.parametrize(("case", "headers", "content", "status"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_the_routes_problem_documents(
    serve: ServeFactory, classifier_dir: Path, case: str, headers: dict[str, str], content: bytes, status: int
) -> None:
    """The oracle is the route itself: the same request under a JSON media type only the route takes."""
    with serve(classifier_dir) as client:
        fast = client.post("/v1/predict", headers={**headers, "Content-Type": "application/json"}, content=content)
        slow = client.post(
            "/v1/predict", headers={**headers, "Content-Type": THROUGH_ROUTE["Content-Type"]}, content=content
        )
    assert fast.status_code == slow.status_code == status, (case, fast.text, slow.text)
    assert fast.headers["content-type"] == "application/problem+json"
    assert fast.json() == slow.json()
    assert fast.headers.get("www-authenticate") == slow.headers.get("www-authenticate")


def test_other_media_types_are_left_to_the_route(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        form = client.post("/v1/predict", headers=EVALUATOR, data={"inputs": "a"})
    assert form.status_code == 415 and form.headers["content-type"] == "application/problem+json"
    assert "application/json" in form.json()["detail"]


def test_oversized_bodies_get_413_on_the_fast_path(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir, max_body_bytes=200) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a" * 300]})
        assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"
        assert client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["short"]}).status_code == 200


def test_engine_refusals_and_bugs_keep_the_one_error_format(
    serve: ServeFactory, classifier_dir: Path, copy_lm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(copy_lm_dir) as client:
        wrong_task = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a b ="]})
    assert wrong_task.status_code == 409 and "use /v1/generate" in wrong_task.json()["detail"]

    async def broken(self: InferenceEngine, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(InferenceEngine, "classify", broken)
    with serve(classifier_dir) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a"]})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "a bug" not in response.text and "Traceback" not in response.text


REFUSALS = [
    (QueueFull("8 examples are queued", 2), 429),
    (QueueTimeout("still queued after the 1 s request timeout", 3), 503),
    (RunTimeout("inference did not finish within the 1 s request timeout"), 504),
    (Closing("the server is shutting down", 4), 503),
]


@pytest.mark.parametrize(("refused", "status"), REFUSALS, ids=[type(r).__name__ for r, _ in REFUSALS])
def test_engine_refusals_are_answered_alike_on_both_paths(
    serve: ServeFactory, classifier_dir: Path, monkeypatch: pytest.MonkeyPatch, refused: Exception, status: int
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise refused

    with serve(classifier_dir) as client:
        monkeypatch.setattr(DynamicBatcher, "submit", refuse)
        fast = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a"]})
        slow = client.post("/v1/predict", headers=THROUGH_ROUTE, content=fast.request.content)
    assert fast.status_code == slow.status_code == status, (fast.text, slow.text)
    assert fast.content == slow.content
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/problem+json"
    assert fast.headers.get("retry-after") == slow.headers.get("retry-after")
    assert (fast.headers.get("retry-after") is None) == (status == 504)


def test_fast_predictions_are_logged_and_counted(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        ids = [
            p["id"]
            for p in client.post("/v1/predict", headers=EVALUATOR, json={"inputs": SENTENCES}).json()["predictions"]
        ]
        engine: InferenceEngine = client.app.state.inference  # type: ignore[attr-defined]
        engine.flush_log()
        feedback = client.post(
            "/v1/feedback", headers=EVALUATOR, json={"items": [{"prediction_id": ids[0], "label": "positive"}]}
        )
        metrics = client.get("/metrics").text
    assert feedback.status_code < 300, feedback.text
    assert 'heldout_http_requests_total{method="POST",route="/v1/predict",status="200"}' in metrics


FRESH_REGISTRY_SCRIPT = """
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.inference.batcher import DynamicBatcher, QueueFull
from service.settings import Settings
from tests.conftest import auth, env_keys

app = create_app(Settings(data_dir=sys.argv[1], model_path=sys.argv[2], api_keys=env_keys()))
with TestClient(app) as client:
    for _ in range(5):
        assert client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": ["fine"]}).status_code == 200

    async def full(*args, **kwargs):
        raise QueueFull("8 examples queued", retry_after_s=2)

    bad = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": []})
    assert bad.status_code == 422, bad.text
    DynamicBatcher.submit = full
    busy = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": ["fine"]})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "2", busy.text
    sys.stdout.write(client.get("/metrics").text)
"""


def test_fast_answers_are_counted_under_the_route(tmp_path: Path, classifier_dir: Path) -> None:
    """A fresh process is a fresh Prometheus registry: the counts are exactly this test's requests."""
    result = subprocess.run(
        [sys.executable, "-c", FRESH_REGISTRY_SCRIPT, str(tmp_path), str(classifier_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {
        (labels["route"], labels["status"]): value
        for labels, value in samples(result.stdout, "heldout_http_requests_total")
    }
    assert counts[("/v1/predict", "200")] == 5
    assert counts[("/v1/predict", "429")] == 1
    assert counts[("/v1/predict", "422")] == 1  # answered by the FastAPI route itself
    assert not any(route == UNMATCHED_ROUTE for route, _ in counts), counts
