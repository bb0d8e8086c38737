"""Bearer-key auth with three nested roles: admin ⊃ evaluator ⊃ reader.

Keys are random 256-bit tokens, so a plain sha256 is a safe stored form. Every comparison goes
through ``hmac.compare_digest`` over all known hashes, so timing reveals nothing about which key
nearly matched. Keys are never logged.
"""

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select

from service.db.models import ApiKey
from service.db.session import Database
from service.errors import ProblemError


class Role(IntEnum):
    reader = 1
    evaluator = 2
    admin = 3


@dataclass(frozen=True)
class Principal:
    role: Role
    key_id: str
    """A stable, non-secret identifier of the key (a hash prefix), for budgets and audit."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_role(name: str) -> Role:
    try:
        return Role[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; use admin, evaluator or reader") from None


def parse_env_keys(spec: str) -> dict[str, Role]:
    """``ROLE:KEY,ROLE:KEY`` → {sha256(KEY): role}."""
    keys: dict[str, Role] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        role, sep, key = item.partition(":")
        if not sep or not key:
            raise ValueError("HELDOUT_API_KEYS entries must look like ROLE:KEY")
        keys[hash_key(key)] = parse_role(role)
    return keys


def create_key(db: Database, role: Role) -> str:
    key = "hk_" + secrets.token_urlsafe(32)
    with db.session() as session:
        session.add(ApiKey(key_hash=hash_key(key), role=role.name))
    return key


def stored_key_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


class KeyStore:
    """Resolves a presented key against the env keys and the stored hashes.

    Stored hashes are cached for a few seconds so a busy inference path does not query the
    database per request; a key created with ``heldout keys create`` works within that time.
    """

    CACHE_SECONDS = 5.0

    def __init__(self, db: Database, env_keys: dict[str, Role]) -> None:
        self._db = db
        self._env_keys = env_keys
        self._stored: dict[str, Role] = {}
        self._loaded_at = float("-inf")

    def _stored_keys(self) -> dict[str, Role]:
        if time.monotonic() - self._loaded_at > self.CACHE_SECONDS:
            with self._db.session() as session:
                self._stored = {h: Role[r] for h, r in session.execute(select(ApiKey.key_hash, ApiKey.role))}
            self._loaded_at = time.monotonic()
        return self._stored

    def has_any(self) -> bool:
        return bool(self._env_keys) or stored_key_count(self._db) > 0

    def lookup(self, key: str) -> Principal | None:
        presented = hash_key(key)
        found: Role | None = None
        for known, role in [*self._env_keys.items(), *self._stored_keys().items()]:
            if hmac.compare_digest(presented, known) and (found is None or role > found):
                found = role
        return None if found is None else Principal(found, presented[:12])


_bearer = HTTPBearer(auto_error=False, description="An API key: Authorization: Bearer <key>")


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency admitting keys of ``role`` or a stronger one.

    Async on purpose: a sync dependency costs every request a thread-pool hop, and the lookup is a
    hash comparison except for the stored-key refresh every few seconds.
    """

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(_bearer)
    ) -> Principal:
        if credentials is None or not credentials.credentials.strip():
            raise ProblemError(401, "missing bearer key", headers={"WWW-Authenticate": "Bearer"})
        store: KeyStore = request.app.state.keys
        principal = store.lookup(credentials.credentials.strip())
        if principal is None:
            raise ProblemError(401, "invalid key", headers={"WWW-Authenticate": "Bearer"})
        if principal.role < role:
            raise ProblemError(403, f"this operation needs the {role.name} role")
        return principal

    return dependency
