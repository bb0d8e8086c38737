"""Replicas starting together on an empty database mint exactly one admin key between them."""

import io
import multiprocessing
import threading
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from service.cli import main as cli_main
from service.db.migrate import migrate
from service.db.models import ApiKey
from service.db.session import Database
from service.key_admin import first_admin_key

STARTS = 4
CREATED = "an admin key was created"


def stored_roles(url: str) -> list[str]:
    db = Database(url)
    with db.session() as session:
        roles = list(session.scalars(select(ApiKey.role)))
    db.dispose()
    return roles


@pytest.fixture
def empty_db(database_url: str, tmp_path: Path) -> str:
    db = Database(database_url)
    migrate(db, tmp_path)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 0
    db.dispose()
    return database_url


def start_in_thread(url: str, barrier: threading.Barrier, keys: list[str | None]) -> None:
    db = Database(url)  # one engine per replica, as separate processes would have
    try:
        barrier.wait()
        keys.append(first_admin_key(db))
    finally:
        db.dispose()


def test_concurrent_first_starts_in_threads_mint_one_admin_key(empty_db: str) -> None:
    barrier = threading.Barrier(STARTS)
    keys: list[str | None] = []
    threads = [threading.Thread(target=start_in_thread, args=(empty_db, barrier, keys)) for _ in range(STARTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == STARTS and sum(key is not None for key in keys) == 1
    assert stored_roles(empty_db) == ["admin"]


def start_in_process(url: str, barrier: Any, results: Any) -> None:
    db = Database(url)
    try:
        barrier.wait()
        results.put(first_admin_key(db))
    finally:
        db.dispose()


def test_concurrent_first_starts_in_processes_mint_one_admin_key(empty_db: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(STARTS)
    results = context.Queue()
    processes = [context.Process(target=start_in_process, args=(empty_db, barrier, results)) for _ in range(STARTS)]
    for process in processes:
        process.start()
    keys = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sum(key is not None for key in keys) == 1
    assert stored_roles(empty_db) == ["admin"]


def test_serve_prints_the_first_admin_key_once_and_only_on_the_first_start(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELDOUT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HELDOUT_DATABASE_URL", empty_db)
    monkeypatch.setenv("HELDOUT_DEMO_MODEL", "false")
    monkeypatch.delenv("HELDOUT_API_KEYS", raising=False)
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    monkeypatch.setattr("monitors.multiproc.prepare_multiprocess_dir", lambda path: None)
    outputs = []
    for _ in range(2):
        with redirect_stdout(io.StringIO()) as out:
            assert cli_main(["serve"]) == 0
        outputs.append(out.getvalue())
    assert CREATED in outputs[0] and CREATED not in outputs[1]
    assert stored_roles(empty_db) == ["admin"]
