"""Property-based API fuzzing over the app's own OpenAPI schema, with a valid admin key.

Fails on any 5xx and on any response that does not match the documented schema. Every operation
runs against an app serving a tiny real classifier; /v1/generate also runs against a tiny seq2seq.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
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


def started(data_dir: Path, model_dir: Path) -> Iterator[FastAPI]:
    app = create_app(
        Settings(
            data_dir=data_dir,
            api_keys=env_keys(),
            metric_workers=1,
            max_resamples=200,
            model_path=model_dir,
            max_new_tokens=8,
        )
    )
    with TestClient(app):  # runs the lifespan: migrations, model load and warm-up
        yield app


@pytest.fixture(scope="module")
def classifier_app(tmp_path_factory: pytest.TempPathFactory, classifier_dir: Path) -> Iterator[FastAPI]:
    yield from started(tmp_path_factory.mktemp("fuzz-classifier"), classifier_dir)


@pytest.fixture(scope="module")
def generator_app(tmp_path_factory: pytest.TempPathFactory, seq2seq_dir: Path) -> Iterator[FastAPI]:
    yield from started(tmp_path_factory.mktemp("fuzz-generator"), seq2seq_dir)


@pytest.fixture(scope="module")
def classifier_schema(classifier_app: FastAPI):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", classifier_app)


@pytest.fixture(scope="module")
def generator_schema(generator_app: FastAPI):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", generator_app).include(path="/v1/generate")


every_operation = schemathesis.pytest.from_fixture("classifier_schema")
generation = schemathesis.pytest.from_fixture("generator_schema")


@every_operation.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_5xx(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth("admin"), checks=CHECKS)


@generation.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_generation_conforms_and_never_5xx(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth("admin"), checks=CHECKS)
