"""/v1/completions and /v1/chat/completions on the fast path: the routes' answers, byte for byte but for ids
and clocks, and every error as the routes answer it. The oracle is the FastAPI route itself, reached with a
JSON media type only the route takes."""

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.inference.batcher import Closing
from service.inference.continuous_batcher import ContinuousBatcher
from tests.conftest import auth

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

EVALUATOR = auth("evaluator")
THROUGH_ROUTE = {**EVALUATOR, "Content-Type": "application/vnd.heldout+json"}
TEMPLATE = "{% for m in messages %}{{ m.content }} ={% endfor %}"
# What differs between two answers to one request: the response id and the second it was created.
VOLATILE = re.compile(rb'"id":"(?:chat)?cmpl-[0-9a-f]+"|"created":\d+')


@pytest.fixture
def lm_client(serve: ServeFactory, copy_lm_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    template = tmp_path / "template.jinja"
    template.write_text(TEMPLATE)
    with serve(copy_lm_dir, chat_template=template, max_new_tokens=12) as client:
        yield client


def bodies(model: str) -> list[tuple[str, dict[str, Any]]]:
    completion = {"model": model, "prompt": ["a b c d =", "c c a ="], "max_tokens": 6, "temperature": 0}
    chat = {"model": model, "messages": [{"role": "user", "content": "a b c d"}], "max_tokens": 5, "temperature": 0}
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    return [
        ("/v1/completions", completion),
        ("/v1/completions", {**completion, **usage}),
        ("/v1/completions", {**completion, "stream": True, "stop": " c"}),
        ("/v1/chat/completions", chat),
        ("/v1/chat/completions", {**chat, **usage}),
    ]


def test_fast_answers_equal_the_routes(lm_client: TestClient, copy_lm_dir: Path, route_calls: list[str]) -> None:
    for path, body in bodies(copy_lm_dir.name):
        fast = lm_client.post(path, headers=EVALUATOR, json=body)
        assert route_calls == [], path
        slow = lm_client.post(path, headers=THROUGH_ROUTE, content=fast.request.content)
        assert route_calls == [path]
        route_calls.clear()
        assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
        assert fast.headers["content-type"] == slow.headers["content-type"], body
        if body.get("stream"):
            assert fast.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert fast.text.endswith("data: [DONE]\n\n") and fast.text.count("data: [DONE]") == 1
        assert VOLATILE.sub(b"", fast.content) == VOLATILE.sub(b"", slow.content), body
        assert len(set(re.findall(rb"cmpl-[0-9a-f]+", fast.content))) == 1  # one id across a stream's chunks


def test_bad_requests_get_the_routes_problem_documents(lm_client: TestClient, copy_lm_dir: Path) -> None:
    model = copy_lm_dir.name
    cases: list[tuple[dict[str, str], str, dict[str, Any], int]] = [
        (auth("reader"), "/v1/completions", {"model": model, "prompt": "a"}, 403),
        ({}, "/v1/completions", {"model": model, "prompt": "a"}, 401),
        (EVALUATOR, "/v1/completions", {"model": "gpt-4o", "prompt": "a", "stream": True}, 404),
        (EVALUATOR, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]}, 404),
        (EVALUATOR, "/v1/completions", {"model": model, "prompt": "a", "logprobs": 1}, 422),
        (EVALUATOR, "/v1/completions", {"model": model, "prompt": "a", "max_tokens": 13, "stream": True}, 422),
        (EVALUATOR, "/v1/completions", {"model": model, "prompt": []}, 422),
    ]
    for headers, path, body, status in cases:
        fast = lm_client.post(path, headers={**headers, "Content-Type": "application/json"}, json=body)
        slow = lm_client.post(
            path, headers={**headers, "Content-Type": THROUGH_ROUTE["Content-Type"]}, content=fast.request.content
        )
        assert fast.status_code == slow.status_code == status, (body, fast.text, slow.text)
        assert fast.headers["content-type"] == "application/problem+json"
        assert fast.json() == slow.json()
        assert fast.json()["error"]["message"] == fast.json()["detail"]


def test_a_model_without_a_template_is_refused_alike(serve: ServeFactory, copy_lm_dir: Path) -> None:
    body = {"model": copy_lm_dir.name, "messages": [{"role": "user", "content": "a"}], "stream": True}
    with serve(copy_lm_dir) as client:
        fast = client.post("/v1/chat/completions", headers=EVALUATOR, json=body)
        slow = client.post("/v1/chat/completions", headers=THROUGH_ROUTE, content=fast.request.content)
    assert fast.status_code == slow.status_code == 422
    assert fast.content == slow.content


def test_refusals_and_bugs_keep_the_one_error_format(
    serve: ServeFactory, copy_lm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"model": copy_lm_dir.name, "prompt": "a =", "max_tokens": 2, "stream": True}
    with serve(copy_lm_dir) as client:

        async def closing(*args: Any, **kwargs: Any) -> Any:
            raise Closing("the server is shutting down", 4)

        monkeypatch.setattr(ContinuousBatcher, "submit", closing)
        fast = client.post("/v1/completions", headers=EVALUATOR, json=body)
        slow = client.post("/v1/completions", headers=THROUGH_ROUTE, content=fast.request.content)
        assert fast.status_code == slow.status_code == 503 and fast.content == slow.content
        assert fast.headers["retry-after"] == slow.headers["retry-after"] == "4"

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise KeyError("a bug")

        monkeypatch.setattr(ContinuousBatcher, "submit", broken)
        response = client.post("/v1/completions", headers=EVALUATOR, json=body)
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert "a bug" not in response.text and "Traceback" not in response.text
