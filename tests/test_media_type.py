"""A body in the wrong media type gets a 415 naming the right one, on every route that takes a body.

``curl -d`` sends ``application/x-www-form-urlencoded``; before the 415, JSON routes answered it with a 422
about dictionaries. The routes are read from the app's own OpenAPI document, so a new route is covered.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth

pytest_plugins = ["tests.inference_fixtures"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(serve: Callable[..., AbstractContextManager[TestClient]], classifier_dir: Path) -> Iterator[TestClient]:
    with serve(classifier_dir) as client:
        yield client


def body_routes(client: TestClient) -> dict[str, str]:
    """path (ids filled with 1) -> the media type its request body is documented in."""
    routes = {}
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        body = operations.get("post", {}).get("requestBody")
        if body:
            (media_type,) = body["content"]
            routes[path.replace("{test_set_id}", "1")] = media_type
    return routes


def assert_415(response, media_type: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 415, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["accept-post"] == media_type
    body = response.json()
    assert body["status"] == 415 and body["title"] == "Unsupported Media Type"
    assert media_type in body["detail"] and body["error"]["code"] == "unsupported_media_type"


def test_a_form_encoded_body_is_415_naming_the_expected_media_type(client: TestClient) -> None:
    routes = body_routes(client)
    assert routes["/v1/predict"] == "application/json" and routes["/v1/test-sets"] == "multipart/form-data"
    # What `curl -d '{"test_set": "x"}'` sends: the JSON text, declared as a form.
    for path, media_type in routes.items():
        response = client.post(path, headers={**auth("admin"), **FORM}, content=b'{"test_set": "x"}')
        assert_415(response, media_type)
        assert "application/x-www-form-urlencoded" in response.json()["detail"]


def test_json_routes_refuse_text_and_undeclared_bodies_but_take_any_json_type(client: TestClient) -> None:
    body = b'{"inputs": ["a delight"]}'
    for sent in ({"Content-Type": "text/plain"}, {}):
        for path in ("/v1/metrics/classification", "/v1/predict"):
            assert_415(client.post(path, headers={**auth("evaluator"), **sent}, content=body), "application/json")
    for media_type in ("application/json; charset=utf-8", "application/vnd.heldout+json"):
        response = client.post("/v1/predict", headers={**auth("evaluator"), "Content-Type": media_type}, content=body)
        assert response.status_code == 200, response.text
    # An empty body is not a media-type problem: an optional body is absent, a required one is missing (422).
    assert client.post("/v1/drift/checks", headers={**auth("evaluator"), **FORM}).status_code != 415
    assert client.post("/v1/predict", headers={**auth("evaluator"), **FORM}).status_code == 422


def test_uploads_stay_multipart(client: TestClient) -> None:
    json_upload = client.post("/v1/test-sets", headers=auth("admin"), json={"name": "x", "task": "classification"})
    assert_415(json_upload, "multipart/form-data")
    record = b'{"id": "a", "text": "a delight", "label": "positive"}\n'
    form = {"name": "x", "task": "classification"}
    multipart = client.post("/v1/test-sets", headers=auth("admin"), data=form, files={"file": ("s.jsonl", record)})
    assert multipart.status_code == 201, multipart.text


def test_the_415_is_documented_on_every_operation_with_a_body(client: TestClient) -> None:
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "415" in operation["responses"], (method, path)
