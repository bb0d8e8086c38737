"""One error shape everywhere: problem+json with type, title, status and detail; never a trace."""

from collections.abc import Iterator

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import auth


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def test_unknown_path_and_method(client: TestClient) -> None:
    assert_problem(client.get("/no/such/path"), 404)
    assert_problem(client.delete("/healthz"), 405)


def test_validation_error_names_the_field(client: TestClient) -> None:
    body = assert_problem(
        client.post("/v1/metrics/classification", headers=auth("evaluator"), json={"predictions": [1]}), 422
    )
    assert "references" in body["detail"]
    assert any(e["field"] == "references" for e in body["errors"])


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/metrics/classification",
        headers={**auth("evaluator"), "content-type": "application/json"},
        content=b"{not json",
    )
    assert_problem(response, 422)


def test_body_over_cap_is_413_by_length_and_by_stream(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(max_body_bytes=1000))
    payload = b'{"predictions": [' + b"1," * 2000 + b'1], "references": [1]}'
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {**auth("evaluator"), "content-type": "application/json"}
        assert_problem(client.post("/v1/metrics/classification", headers=headers, content=payload), 413)

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(payload), 256):
                yield payload[start : start + 256]

        streamed = client.post("/v1/metrics/classification", headers=headers, content=chunks())
        assert_problem(streamed, 413)


def test_unhandled_errors_hide_the_trace(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-marker")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
        body = assert_problem(response, 500)
        assert "secret-internal-marker" not in response.text
        assert "Traceback" not in response.text
        assert body["detail"]
