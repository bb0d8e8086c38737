"""Apply Alembic migrations, serialised across processes so replicas can start together.

Every start passes through here, so it is also where the data dir (the lock's home) is made owner-only.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from service.db.session import FILE_MODE, Database, private_dir

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant naming heldout's migration lock in pg_advisory_lock's key space.
PG_LOCK_KEY = 0x6865_6C64


@contextmanager
def _migration_lock(db: Database, lock_dir: Path) -> Iterator[None]:
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
        return
    fd = os.open(lock_dir / ".migrate.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    with os.fdopen(fd, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(db: Database, lock_dir: Path) -> None:
    """Upgrades to the latest schema; ``lock_dir`` is the data dir, made owner-only here on either database."""
    private_dir(lock_dir)
    with _migration_lock(db, lock_dir):
        command.upgrade(alembic_config(db.url), "head")
