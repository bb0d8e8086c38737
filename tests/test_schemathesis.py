"""Property-based API fuzzing over the app's own OpenAPI schema, with a valid admin key.

Fails on any 5xx and on any response that does not match the documented schema.
"""

from collections.abc import Iterator

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
from tests.conftest import auth


@pytest.fixture(scope="module")
def started_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    from service.settings import Settings
    from tests.conftest import env_keys

    data_dir = tmp_path_factory.mktemp("schemathesis")
    app = create_app(Settings(data_dir=data_dir, api_keys=env_keys(), metric_workers=1, max_resamples=200))
    with TestClient(app):  # runs the lifespan: migrations
        yield app


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(started_app: FastAPI):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", started_app)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_5xx(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=auth("admin"), checks=CHECKS)
