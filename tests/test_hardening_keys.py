"""Stored keys: listed without the key, revoked on every replica within seconds, last use recorded once per
refresh, and lookups that never query the database on the calling thread (the event loop)."""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from service.app import create_app
from service.auth import KeyStore, Role, create_key, hash_key
from service.cli import main as cli_main
from service.db.migrate import migrate
from service.db.session import Database
from service.key_admin import list_keys
from service.settings import Settings


@pytest.fixture
def cli_env(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Callable[..., Settings]:
    """The CLI and the apps it builds share the parametrised database and no env keys."""
    settings = make_settings(database_url=database_url, api_keys="")
    monkeypatch.setenv("HELDOUT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HELDOUT_DATABASE_URL", database_url)
    monkeypatch.delenv("HELDOUT_API_KEYS", raising=False)
    return lambda: make_settings(database_url=database_url, api_keys="")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def statements(engine: Engine, prefix: str) -> list[int]:
    """Thread ids of the statements starting with ``prefix`` run on ``engine`` from now on."""
    seen: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            seen.append(threading.get_ident())

    return seen


def test_keys_list_shows_id_role_dates_and_hash_prefix_never_the_key(
    cli_env: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    keys = {}
    for role in ("admin", "reader"):
        code, out, _ = cli(capsys, "keys", "create", "--role", role)
        assert code == 0
        keys[role] = out.strip().splitlines()[-1]
    code, out, _ = cli(capsys, "keys", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["id", "role", "created", "hash", "last", "used", "revoked"]
    assert len(lines) == 3
    for line, (role, key) in zip(lines[1:], keys.items(), strict=True):
        fields = line.split()
        assert fields[1] == role and fields[3] == hash_key(key)[:12] and fields[4:] == ["-", "-"]
    assert not any(key in out for key in keys.values())
    assert not any(hash_key(key) in out for key in keys.values())


def test_revoking_an_unknown_id_fails(cli_env: Callable[..., Settings], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "keys", "revoke", "999")
    assert code == 1 and "no key with id 999" in err


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_revoked_key_is_refused_on_every_replica_within_seconds(
    cli_env: Callable[..., Settings], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeyStore, "REFRESH_SECONDS", 0.2)
    code, out, _ = cli(capsys, "keys", "create", "--role", "evaluator")
    key = out.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(TestClient(create_app(cli_env()), raise_server_exceptions=False)) for _ in range(2)
        ]

        def statuses() -> set[int]:
            return {r.post("/v1/metrics/classification", headers=headers, json={}).status_code for r in replicas}

        assert statuses() == {422}  # authenticated, then the empty body is refused
        key_id = list_keys(replicas[0].app.state.db)[0].id  # type: ignore[attr-defined]
        code, out, _ = cli(capsys, "keys", "revoke", str(key_id))
        assert code == 0 and "revoked" in out
        assert wait_for(lambda: statuses() == {401}, 3.0), statuses()
        assert {r.get("/v1/models", headers=headers).status_code for r in replicas} == {401}
    assert list_keys(replicas[0].app.state.db)[0].revoked_at is not None  # type: ignore[attr-defined]


@pytest.fixture
def keyed_db(database_url: str, tmp_path: Any) -> Iterator[Database]:
    db = Database(database_url)
    migrate(db, tmp_path)
    yield db
    db.dispose()


def test_last_use_is_written_by_the_refresh_once_per_interval_not_per_request(
    keyed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = create_key(keyed_db, Role.reader)
    unused = create_key(keyed_db, Role.evaluator)
    store = KeyStore(keyed_db, {})
    store.refresh()
    updates = statements(keyed_db.engine, "UPDATE")
    for _ in range(50):
        assert store.lookup(key) is not None
    assert updates == []
    store.refresh()
    assert len(updates) == 1
    used = {row.hash_prefix: row.last_used_at for row in list_keys(keyed_db)}
    assert used[hash_key(key)[:12]] is not None and used[hash_key(unused)[:12]] is None
    store.refresh()
    assert len(updates) == 1  # no use since the last refresh: nothing to write


def test_lookup_never_queries_the_database_on_the_calling_thread(
    keyed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeyStore, "REFRESH_SECONDS", 0.05)
    key = create_key(keyed_db, Role.evaluator)
    store = KeyStore(keyed_db, {})
    queries = statements(keyed_db.engine, "")

    async def serve_lookups() -> tuple[int, list[bool]]:
        await store.start()
        found = []
        for _ in range(20):
            found.append(store.lookup(key) is not None)
            await asyncio.sleep(0.02)
        await store.aclose()
        return threading.get_ident(), found

    loop_thread, found = asyncio.run(serve_lookups())
    assert all(found)
    assert len(queries) > 2 and loop_thread not in queries
