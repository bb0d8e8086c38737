"""Every /v1 route needs a key; roles nest admin ⊃ evaluator ⊃ reader."""

import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.cli import main as cli_main
from tests.conftest import KEYS, auth


def v1_operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented /v1 operation, path parameters filled in."""
    ops = []
    for template, operations in app.openapi()["paths"].items():
        if template.startswith("/v1"):
            path = re.sub(r"\{[^}]+\}", "1", template)
            ops.extend((method.upper(), path) for method in operations)
    return ops


def test_there_are_v1_operations_to_protect(app: FastAPI) -> None:
    assert any(method == "POST" for method, _ in v1_operations(app))


def test_every_v1_operation_without_a_key_is_401_problem(app: FastAPI, client: TestClient) -> None:
    for method, path in v1_operations(app):
        for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}):
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["content-type"].startswith("application/problem+json")
            body = response.json()
            assert body["status"] == 401 and body["title"] and body["detail"] and body["type"]


def test_reader_key_on_any_post_is_403(app: FastAPI, client: TestClient) -> None:
    posts = [(m, p) for m, p in v1_operations(app) if m != "GET"]
    for method, path in posts:
        response = client.request(method, path, headers=auth("reader"), json={})
        assert response.status_code == 403, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_admin_and_evaluator_pass_auth_on_evaluator_routes(client: TestClient) -> None:
    for role in ("admin", "evaluator"):
        response = client.post("/v1/metrics/classification", headers=auth(role), json={})
        assert response.status_code == 422  # authenticated, then the empty body is rejected


def test_cli_key_is_stored_only_as_hash_and_works(
    make_settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = make_settings(database_url=database_url, api_keys="")
    monkeypatch.setenv("HELDOUT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HELDOUT_DATABASE_URL", database_url)
    assert cli_main(["keys", "create", "--role", "evaluator"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(key) > 30

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = [tuple(map(str, row)) for row in conn.execute(text("SELECT * FROM api_key"))]
    engine.dispose()
    assert rows and not any(key in value for row in rows for value in row)

    from service.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.post("/v1/metrics/classification", headers=headers, json={}).status_code == 422
        assert client.post("/v1/metrics/classification", json={}).status_code == 401


def test_unknown_role_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["keys", "create", "--role", "root"]) == 2
    assert "unknown role" in capsys.readouterr().err


def test_keys_never_reach_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for key in [*KEYS.values(), "wrong-key-canary"]:
        client.post("/v1/metrics/classification", headers={"Authorization": f"Bearer {key}"}, json={})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(key in logged for key in [*KEYS.values(), "wrong-key-canary"])
