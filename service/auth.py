"""Bearer-key auth with three nested roles: admin ⊃ evaluator ⊃ reader.

Keys are random 256-bit tokens, so a plain sha256 is a safe stored form. Every comparison goes
through ``hmac.compare_digest`` over all known hashes, so timing reveals nothing about which key
nearly matched. Keys are never logged.
"""

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, update

from service.db.models import ApiKey, utcnow
from service.db.session import Database
from service.errors import ProblemError

log = logging.getLogger("heldout.auth")


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


def generate_key() -> str:
    return "hk_" + secrets.token_urlsafe(32)


def create_key(db: Database, role: Role) -> str:
    key = generate_key()
    with db.session() as session:
        session.add(ApiKey(key_hash=hash_key(key), role=role.name))
    return key


class KeyStore:
    """Resolves a presented key against the env keys and a snapshot of the stored, unrevoked hashes.

    ``lookup`` never touches the database: it runs on the event loop for every request. The snapshot is
    replaced by ``refresh``, which a background task runs in a thread every REFRESH_SECONDS, so a key
    created with ``heldout keys create`` starts working, and one revoked stops, within that time on every
    replica. The same refresh records which stored keys were used since the last one: one UPDATE per
    interval, not a write per request.
    """

    REFRESH_SECONDS = 5.0

    def __init__(self, db: Database, env_keys: dict[str, Role]) -> None:
        self._db = db
        self._env_keys = env_keys
        self._stored: dict[str, Role] = {}
        self._used: set[str] = set()
        self._used_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        """Blocking: write the last uses gathered since the previous refresh, then reload the snapshot."""
        with self._used_lock:
            used, self._used = self._used, set()
        try:
            with self._db.session() as session:
                if used:
                    session.execute(update(ApiKey).where(ApiKey.key_hash.in_(used)).values(last_used_at=utcnow()))
                active = select(ApiKey.key_hash, ApiKey.role).where(ApiKey.revoked_at.is_(None))
                stored = {key_hash: Role[role] for key_hash, role in session.execute(active)}
        except BaseException:
            with self._used_lock:
                self._used |= used
            raise
        self._stored = stored

    async def start(self) -> None:
        """Load the snapshot before serving, then keep it fresh from a background task."""
        await asyncio.to_thread(self.refresh)
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever(), name="heldout-keys")

    async def aclose(self) -> None:
        """Stop refreshing and write the last uses still pending."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.to_thread(self.refresh)
        except Exception:
            log.warning("last use of API keys not recorded at shutdown", exc_info=True)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.warning("stored API keys not refreshed; the last loaded set stays in use", exc_info=True)

    def lookup(self, key: str) -> Principal | None:
        presented = hash_key(key)
        found: Role | None = None
        for known, role in self._env_keys.items():
            if hmac.compare_digest(presented, known) and (found is None or role > found):
                found = role
        stored_match = False
        for known, role in self._stored.items():
            if hmac.compare_digest(presented, known):
                stored_match = True
                found = role if found is None or role > found else found
        if stored_match:
            with self._used_lock:
                self._used.add(presented)
        return None if found is None else Principal(found, presented[:12])


_bearer = HTTPBearer(auto_error=False, description="An API key: Authorization: Bearer <key>")


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency admitting keys of ``role`` or a stronger one.

    Async on purpose: a sync dependency costs every request a thread-pool hop, and the lookup is only
    hash comparisons (the stored keys are refreshed by a background task, off the event loop).
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
