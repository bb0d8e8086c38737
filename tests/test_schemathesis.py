"""Property-based API fuzzing over the app's own OpenAPI schema, with a valid admin key.

Fails on any 5xx and on any response that does not match the documented schema. Every operation
runs against a real server twice: serving a tiny classifier, and serving a tiny seq2seq generator.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings
from tests.conftest import auth, env_keys
from tests.inference_fixtures import classifier_dir, one_torch_thread, seq2seq_dir

__all__ = ["classifier_dir", "one_torch_thread", "seq2seq_dir"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Served:
    def __init__(self, app: FastAPI, base_url: str) -> None:
        self.app = app
        self.base_url = base_url


def started(data_dir: Path, model_dir: Path) -> Iterator[Served]:
    """A real uvicorn server in a thread: one event loop owns the lifespan and every request."""
    app = create_app(
        Settings(
            data_dir=data_dir,
            api_keys=env_keys(),
            metric_workers=1,
            max_resamples=200,
            model_path=model_dir,
            max_new_tokens=8,
            drift_executor="thread",
        )
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory: pytest.TempPathFactory, classifier_dir: Path) -> Iterator[Served]:
    yield from started(tmp_path_factory.mktemp("fuzz-classifier"), classifier_dir)


@pytest.fixture(scope="module")
def generator_server(tmp_path_factory: pytest.TempPathFactory, seq2seq_dir: Path) -> Iterator[Served]:
    yield from started(tmp_path_factory.mktemp("fuzz-generator"), seq2seq_dir)


@pytest.fixture(scope="module")
def classifier_schema(classifier_server: Served):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_dict(classifier_server.app.openapi())


@pytest.fixture(scope="module")
def generator_schema(generator_server: Served):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_dict(generator_server.app.openapi())


every_operation = schemathesis.pytest.from_fixture("classifier_schema")
generation = schemathesis.pytest.from_fixture("generator_schema")


@every_operation.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_5xx(case, classifier_server: Served) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(base_url=classifier_server.base_url, headers=auth("admin"), checks=CHECKS)


@generation.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_generation_conforms_and_never_5xx(case, generator_server: Served) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(base_url=generator_server.base_url, headers=auth("admin"), checks=CHECKS)
