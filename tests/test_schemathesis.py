"""Property-based API fuzzing over the app's own OpenAPI schema, with a valid admin key.

Every operation runs against a real server twice: serving a tiny classifier, and serving a tiny seq2seq
generator. Data that fits the schema must get a documented status, content type and body; data that does
not fit it must get a 4xx. Neither may get a 5xx.

Cases come from schemathesis' own strategies driven by plain hypothesis ``@given``, not from its pytest
plugin's lazy fixtures, which reach into pytest internals that change between minor releases.
"""

from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
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
from tests.live_server import served_in_thread

__all__ = ["classifier_dir", "one_torch_thread", "seq2seq_dir"]
POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error]
EXAMPLES = 8

# Date-times at the ends of the calendar: shifting a window from year 1 or 9999 overflowed into a 500.
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"]),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    ),
)


class Served:
    def __init__(self, app: FastAPI, base_url: str) -> None:
        self.app = app
        self.base_url = base_url


def started(data_dir: Path, model_dir: Path) -> Iterator[Served]:
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
    with served_in_thread(app) as base_url:
        yield Served(app, base_url)


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory: pytest.TempPathFactory, classifier_dir: Path) -> Iterator[Served]:
    yield from started(tmp_path_factory.mktemp("fuzz-classifier"), classifier_dir)


@pytest.fixture(scope="module")
def generator_server(tmp_path_factory: pytest.TempPathFactory, seq2seq_dir: Path) -> Iterator[Served]:
    yield from started(tmp_path_factory.mktemp("fuzz-generator"), seq2seq_dir)


def fuzz(served: Served, mode: GenerationMode, checks: list[Any]) -> None:
    """Run ``EXAMPLES`` cases of every operation; fail once, listing every operation that failed.

    An operation without parameters or body has no data that breaks its schema: its negative run is empty.
    """
    schema = schemathesis.openapi.from_dict(served.app.openapi())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, "the schema lost its operations"
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            case.call_and_validate(base_url=served.base_url, headers=auth("admin"), checks=checks)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid case could be generated"
        except Exception as exc:  # noqa: BLE001 - collected and reported per operation below
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)


SERVERS: dict[str, Callable[[pytest.FixtureRequest], Served]] = {
    "classifier": lambda request: request.getfixturevalue("classifier_server"),
    "generator": lambda request: request.getfixturevalue("generator_server"),
}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_data_that_fits_the_schema_gets_documented_answers(request: pytest.FixtureRequest, server: str) -> None:
    fuzz(SERVERS[server](request), GenerationMode.POSITIVE, POSITIVE_CHECKS)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_data_that_does_not_fit_never_gets_a_5xx(request: pytest.FixtureRequest, server: str) -> None:
    fuzz(SERVERS[server](request), GenerationMode.NEGATIVE, NEGATIVE_CHECKS)
