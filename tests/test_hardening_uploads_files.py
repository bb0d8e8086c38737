"""The data dir, the SQLite files and upload spools are private to the service, whatever the umask (#12)."""

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.routes import test_sets
from service.settings import Settings
from service.test_sets import store
from service.upload_spool import spool_dir
from tests.fixtures_test_sets import jsonl, uploaded


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0: every mode below comes from the service, not from the environment."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_data_dir_and_sqlite_files_are_owner_only(open_umask: None, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        uploaded(client, jsonl([{"id": "a", "text": "x", "label": "a"}]))
        database = settings.data_dir / "heldout.db"
        files = [database, *(database.with_name(database.name + side) for side in ("-wal", "-shm"))]
        assert all(path.exists() for path in files)
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        assert mode(settings.data_dir) == 0o700
        assert mode(settings.data_dir / ".migrate.lock") == 0o600
        assert mode(spool_dir(settings.data_dir)) == 0o700


def test_an_existing_loose_data_dir_and_database_are_tightened(
    open_umask: None, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    settings.data_dir.mkdir(mode=0o777)
    database = settings.data_dir / "heldout.db"
    database.touch(mode=0o666)
    with TestClient(create_app(settings), raise_server_exceptions=False):
        assert mode(settings.data_dir) == 0o700
        assert mode(database) == 0o600


def test_uploads_spool_to_the_data_dir(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette would spool to the system temp dir, a small /tmp in the Helm chart."""
    settings = make_settings()
    spooled: list[str] = []
    create = store.create_test_set

    def spy(db: Any, upload: store.Upload, max_record_bytes: int) -> Any:
        spooled.append(os.readlink(f"/proc/self/fd/{upload.stream.fileno()}"))
        return create(db, upload, max_record_bytes)

    monkeypatch.setattr(test_sets.store, "create_test_set", spy)
    rows = [{"id": f"r{i}", "text": f"text {i} " + "x" * 200, "label": "a"} for i in range(8000)]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert uploaded(client, jsonl(rows))["size"] == 8000
    (path,) = spooled
    assert path.startswith(str(spool_dir(settings.data_dir)) + "/"), path
    assert list(spool_dir(settings.data_dir).iterdir()) == []
