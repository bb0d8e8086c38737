"""Storage on both backends: migrations, concurrency of start-up, key storage, readiness."""

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.auth import KeyStore, Role, create_key
from service.db.migrate import migrate
from service.db.session import Database


def test_migrations_apply_and_are_idempotent(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(database_url)
    migrate(db, tmp_path)
    migrate(db, tmp_path)
    tables = set(inspect(db.engine).get_table_names())
    assert {"api_key", "alembic_version"} <= tables
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    db.dispose()


def test_replicas_starting_together_migrate_once(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(database_url)
        try:
            migrate(db, tmp_path)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_stored_keys_resolve_to_their_role(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(database_url)
    migrate(db, tmp_path)
    keys = {role: create_key(db, role) for role in Role}
    store = KeyStore(db, {})
    store.refresh()
    for role, key in keys.items():
        principal = store.lookup(key)
        assert principal is not None and principal.role == role
    assert store.lookup("hk_not-a-key") is None
    db.dispose()


def test_readyz_reports_a_lost_database(postgres_server: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    name = "heldout_readyz_probe"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with TestClient(create_app(make_settings(database_url=url)), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "database" in response.json()["detail"]
    admin.dispose()


@pytest.mark.parametrize("bad_url", ["postgresql+psycopg://nobody@127.0.0.1:1/none"])
def test_unreachable_database_fails_start_clearly(bad_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="127.0.0.1"), TestClient(create_app(make_settings(database_url=bad_url))):
        pass
