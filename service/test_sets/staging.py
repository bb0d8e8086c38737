"""Staged uploads: records land in short transactions under an unpublished set, which publishes in one.

One transaction for a whole upload would hold SQLite's single write lock for minutes and stall every
other write (scores, feedback, the prediction log). So the set row commits first with version NULL,
which every read filters out; records follow in bounded transactions that also renew the row's
heartbeat; the version is assigned in one short transaction at the end. A failed upload deletes its
rows; one whose process died is swept by a later upload once its heartbeat is older than STALE_AFTER,
so an upload still running on another replica is never touched.
"""

import time
import zlib
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, or_, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from service.db.models import TestRecord, TestSet, TrainingRecord, utcnow
from service.db.session import Database
from service.test_sets.errors import UploadNotStored

# A staged set whose heartbeat is older than this belongs to a dead process: far longer than any batch.
STALE_AFTER = timedelta(minutes=10)
# Heartbeats between batches (audit queries, training fingerprints) are at most this often.
HEARTBEAT_S = 30.0
# Rows deleted per transaction when staged records are removed.
PURGE_ROWS = 20_000
# Namespace of heldout's per-name upload locks in pg_advisory_xact_lock's two-key space.
PG_UPLOAD_LOCK = 0x6873
_RECORDS: Table = TestRecord.__table__  # type: ignore[assignment]


class NameTaken(Exception):
    """Publishing with ``if_absent`` found a live set of that name."""


def _abandoned() -> UploadNotStored:
    return UploadNotStored("the upload stalled and was abandoned; nothing was stored, try again")


def _staged(set_id: int) -> ColumnElement[bool]:
    return (TestSet.id == set_id) & TestSet.version.is_(None) & TestSet.deleted_at.is_(None)


def _renew(session: Session, set_id: int) -> None:
    """Renews the heartbeat; as the transaction's first statement it also takes SQLite's write lock."""
    result = session.execute(update(TestSet).where(_staged(set_id)).values(heartbeat_at=utcnow()))
    if not isinstance(result, CursorResult) or result.rowcount != 1:
        raise _abandoned()


def begin(db: Database, name: str, task: str, created_by: str) -> int:
    """Commits an unpublished set row and returns its id."""
    with db.session() as session:
        row = TestSet(
            name=name,
            task=task,
            size=0,
            n_bytes=0,
            multilabel=False,
            settings={},
            created_by=created_by,
            heartbeat_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def append(db: Database, set_id: int, rows: list[dict[str, Any]]) -> None:
    """Stores one batch of records in its own transaction."""
    with db.session() as session:
        _renew(session, set_id)
        session.execute(_RECORDS.insert(), rows)


class Heartbeat:
    """Renews a staged set's heartbeat, at most every HEARTBEAT_S, during long reads between batches."""

    def __init__(self, db: Database, set_id: int) -> None:
        self._db = db
        self._set_id = set_id
        self._last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._last < HEARTBEAT_S:
            return
        with self._db.session() as session:
            _renew(session, self._set_id)
        self._last = time.monotonic()


def publish(db: Database, set_id: int, values: dict[str, Any], if_absent: bool) -> TestSet:
    """Assigns the next version of the set's name, under a per-name lock, and makes the set visible."""
    with db.session() as session:
        _renew(session, set_id)
        row = session.get_one(TestSet, set_id)
        if session.get_bind().dialect.name == "postgresql":
            lock = zlib.crc32(row.name.encode("utf-8")) - 2**31
            session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": PG_UPLOAD_LOCK, "b": lock})
        live = (TestSet.name == row.name) & TestSet.deleted_at.is_(None) & TestSet.version.is_not(None)
        if if_absent and session.scalar(select(func.count()).where(live)):
            raise NameTaken(row.name)
        latest = session.scalar(select(func.max(TestSet.version)).where(TestSet.name == row.name))
        for name, value in values.items():
            setattr(row, name, value)
        row.version = (latest or 0) + 1
        row.heartbeat_at = None
        session.flush()
        return row


def discard(db: Database, set_id: int) -> None:
    """Marks the staged set abandoned, so nothing can publish it, then deletes it batch by batch."""
    with db.session() as session:
        session.execute(update(TestSet).where(_staged(set_id)).values(deleted_at=utcnow(), heartbeat_at=utcnow()))
    _purge(db, set_id)


def _purge(db: Database, set_id: int) -> None:
    with db.session() as session:
        last = session.scalar(select(func.max(TestRecord.position)).where(TestRecord.test_set_id == set_id))
    for start in range(0, (last if last is not None else -1) + 1, PURGE_ROWS):
        with db.session() as session:
            session.execute(
                delete(TestRecord).where(
                    TestRecord.test_set_id == set_id,
                    TestRecord.position >= start,
                    TestRecord.position < start + PURGE_ROWS,
                )
            )
    with db.session() as session:
        session.execute(delete(TrainingRecord).where(TrainingRecord.test_set_id == set_id))
        session.execute(delete(TestSet).where(TestSet.id == set_id, TestSet.version.is_(None)))


def sweep_stale(db: Database) -> int:
    """Deletes staged sets whose heartbeat is older than STALE_AFTER; returns how many.

    Each is claimed by one conditional update first, so two sweepers never purge the same set at once.
    """
    stale = TestSet.version.is_(None) & or_(
        TestSet.heartbeat_at.is_(None), TestSet.heartbeat_at < utcnow() - STALE_AFTER
    )
    with db.session() as session:
        candidates = list(session.scalars(select(TestSet.id).where(stale)))
    swept = 0
    for set_id in candidates:
        with db.session() as session:
            claimed = session.execute(
                update(TestSet).where(TestSet.id == set_id, stale).values(deleted_at=utcnow(), heartbeat_at=utcnow())
            )
        if isinstance(claimed, CursorResult) and claimed.rowcount == 1:
            _purge(db, set_id)
            swept += 1
    return swept
