"""Shared fixtures: databases (SQLite and a real PostgreSQL), apps and authenticated clients."""

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.settings import Settings

POSTGRES_URL = os.environ.get("HELDOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KEYS = {"admin": "test-admin-key", "evaluator": "test-evaluator-key", "reader": "test-reader-key"}
SHARED_TRUTH = Path(__file__).resolve().parents[1].parent / "shared" / "truth"


def _postgres_unavailable_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string(hide_password=True)} not reachable: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped at the end of the session."""
    reason = _postgres_unavailable_reason()
    if reason:
        print(f"\nSKIPPING PostgreSQL tests: {reason}")
        pytest.skip(reason)
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"heldout_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on both backends; PostgreSQL gets clean tables per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'heldout.db'}"
        return
    url: str = request.getfixturevalue("postgres_server")
    yield url
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def env_keys() -> str:
    return ",".join(f"{role}:{key}" for role, key in KEYS.items())


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "api_keys": env_keys(), "metric_workers": 1}
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> FastAPI:
    return create_app(make_settings())


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


_backends_run: set[str] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if report.when == "call" and report.passed and callspec and "database_url" in callspec.params:
        _backends_run.add(str(callspec.params["database_url"]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _backends_run:
        shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        names = ", ".join(sorted(_backends_run))
        terminalreporter.write_line(f"storage tests passed on: {names} (PostgreSQL: {shown})")
