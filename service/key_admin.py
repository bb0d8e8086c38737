"""Operator-side key management behind ``heldout keys`` and the first start: list, revoke, first admin key.

Nothing here sees a key after it is created: rows carry only the hash, shown by a 12-character prefix
(the same prefix requests are audited under).
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from service.auth import Role, generate_key, hash_key
from service.db.models import ApiKey, utcnow
from service.db.session import Database

HASH_PREFIX_CHARS = 12
# Arbitrary constant naming the first-key lock in pg_advisory_xact_lock's key space (migrate.py uses another).
PG_FIRST_KEY_LOCK = 0x6865_6C6B


@dataclass(frozen=True)
class KeyInfo:
    id: int
    role: str
    created_at: datetime
    hash_prefix: str
    last_used_at: datetime | None
    revoked_at: datetime | None


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.role, row.created_at, row.key_hash[:HASH_PREFIX_CHARS], row.last_used_at, row.revoked_at)


def list_keys(db: Database) -> list[KeyInfo]:
    with db.session() as session:
        return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def revoke_key(db: Database, key_id: int) -> KeyInfo | None:
    """Marks the key revoked (once: a second revocation keeps the first time); None if no such key."""
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def active_admin_keys(db: Database) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(ApiKey).where(ApiKey.role == Role.admin.name)
        return int(session.scalar(query.where(ApiKey.revoked_at.is_(None))) or 0)


def _lock_key_creation(session: Session) -> None:
    """Serialises first starts for the rest of the transaction: replicas starting together must not each see
    an empty table and each mint an admin key."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_FIRST_KEY_LOCK})
    elif dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    else:
        raise RuntimeError(f"no first-key lock for {dialect}; heldout supports SQLite and PostgreSQL")


def first_admin_key(db: Database) -> str | None:
    """A new admin key if no key was ever stored, else None; one per database however many replicas start."""
    with db.session() as session:
        _lock_key_creation(session)
        if session.scalar(select(func.count()).select_from(ApiKey)):
            return None
        key = generate_key()
        session.add(ApiKey(key_hash=hash_key(key), role=Role.admin.name))
    return key
