"""Test-set storage: the staged upload, reads of metadata and inputs, deletion.

An upload stages its records in bounded transactions (``test_sets.staging``) so other writes go on
meanwhile, then publishes the set, its audit and its version in one short transaction; until then
no read sees it, and a failed upload deletes what it staged. Duplicate ids, duplicate inputs and
contamination are found by grouping queries over the staged records, not in memory.
"""

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Column, ColumnElement, MetaData, String, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.db.models import Evaluation, ScoringState, TestRecord, TestSet, TrainingRecord, utcnow
from service.db.session import Database
from service.tasks import Task
from service.test_sets import staging
from service.test_sets.audit import AuditBuilder, Contamination, DuplicateGroups
from service.test_sets.config import ConfigForm, SetConfig, build_config, check_form
from service.test_sets.errors import TestSetNotFound, UploadInvalid, UploadNotStored
from service.test_sets.fingerprint import exact_fingerprint, fingerprint
from service.test_sets.records import Format, Record, RecordReader, canonical_json, detect_format
from service.test_sets.training import TrainingSample, TrainingSource, training_fingerprints

log = logging.getLogger("heldout.test_sets")
INSERT_BATCH = 2000
# One staging transaction: this many records, or this many bytes of them, whichever comes first.
STAGE_ROWS = 20_000
STAGE_BYTES = 16 * 1024 * 1024
# Records of recently scored sets kept in memory per process.
TARGET_CACHE_RECORDS = 2_000_000
MAX_GROUP_EXAMPLES = 10
IDS_PER_GROUP = 5
# Bytes of ids and inputs in one page of GET /inputs; a page holds at least one record.
INPUTS_PAGE_BYTES = 8 * 1024 * 1024
_TRAINING = Table("heldout_training_fp", MetaData(), Column("fp", String(64), primary_key=True), prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Upload:
    name: str
    task: Task
    filename: str | None
    stream: IO[bytes]
    fmt: Format | None
    config: ConfigForm
    training: list[TrainingSource]
    created_by: str
    training_sample: int = 0
    """Labelled records of a training_file kept for the generalization gap (HELDOUT_TRAINING_SAMPLE)."""


def _row(test_set_id: int, position: int, record: Record) -> dict[str, Any]:
    return {
        "test_set_id": test_set_id,
        "position": position,
        "line": record.line,
        "record_id": record.id,
        "input": record.input,
        "target": record.target,
        "exact_fp": exact_fingerprint(record.input),
        "norm_fp": fingerprint(record.input),
        "target_fp": hashlib.sha256(canonical_json(record.target)).hexdigest()[:32],
        "group": record.group,
    }


def create_test_set(db: Database, upload: Upload, max_record_bytes: int) -> TestSet:
    """Validate, audit and store an upload; raises UploadInvalid naming lines, and then stores nothing."""
    return _create(db, upload, max_record_bytes, if_absent=False)


def _database_refused(exc: DBAPIError) -> UploadNotStored:
    """A database error on the records' insert would quote them (labels included) in its message and the
    log; only its type goes on."""
    log.error("test-set upload failed in the database: %s", type(exc.orig).__name__)
    return UploadNotStored("the database could not store the test set; nothing was stored, try again")


def create_if_absent(db: Database, upload: Upload, max_record_bytes: int) -> TestSet | None:
    """As create_test_set, but store nothing (and return None) when a set of that name exists.

    Decided again under the same per-name lock as versions, so replicas starting together register it once.
    """
    if _has_live(db, upload.name):
        return None
    try:
        return _create(db, upload, max_record_bytes, if_absent=True)
    except staging.NameTaken:
        return None


def _has_live(db: Database, name: str) -> bool:
    live = (TestSet.name == name) & TestSet.deleted_at.is_(None) & TestSet.version.is_not(None)
    with db.session() as session:
        return bool(session.scalar(select(func.count()).where(live)))


def _create(db: Database, upload: Upload, max_record_bytes: int, if_absent: bool) -> TestSet:
    try:
        check_form(upload.task, upload.config)
        staging.sweep_stale(db)
        set_id = staging.begin(db, upload.name, upload.task.value, upload.created_by)
        try:
            return _store(db, set_id, upload, max_record_bytes, if_absent)
        except BaseException:
            _discard_quietly(db, set_id)
            raise
    except DBAPIError as exc:
        raise _database_refused(exc) from None


def _discard_quietly(db: Database, set_id: int) -> None:
    """Removes a failed upload's rows; if the database refuses now, a later upload sweeps them."""
    try:
        staging.discard(db, set_id)
    except DBAPIError as exc:
        log.error("could not remove staged test set %s (%s); a later upload sweeps it", set_id, type(exc.orig).__name__)


@dataclass
class _Staged:
    sha256: str
    n_bytes: int


def _stage_records(db: Database, set_id: int, upload: Upload, reader: RecordReader, audit: AuditBuilder) -> _Staged:
    head = upload.stream.read(4096)
    upload.stream.seek(0)
    fmt = upload.fmt or detect_format(upload.filename, head)
    digest = hashlib.sha256()
    n_bytes = 0
    batch: list[dict[str, Any]] = []
    batch_bytes = 0
    for position, record in enumerate(reader.read(upload.stream, fmt)):
        digest.update(record.canonical)
        n_bytes += len(record.canonical)
        audit.add(record)
        batch.append(_row(set_id, position, record))
        batch_bytes += len(record.canonical)
        if len(batch) >= STAGE_ROWS or batch_bytes >= STAGE_BYTES:
            staging.append(db, set_id, batch)
            batch, batch_bytes = [], 0
    if batch:
        staging.append(db, set_id, batch)
    return _Staged(digest.hexdigest(), n_bytes)


def _store(db: Database, set_id: int, upload: Upload, max_record_bytes: int, if_absent: bool) -> TestSet:
    reader = RecordReader(upload.task, max_record_bytes)
    audit = AuditBuilder(upload.task)
    staged = _stage_records(db, set_id, upload, reader, audit)
    beat = staging.Heartbeat(db, set_id)
    has_file = any(source.field == "training_file" for source in upload.training)
    sample = TrainingSample(upload.task, upload.training_sample) if has_file else None
    with db.session() as session:
        _check_unique_ids(session, set_id)
        labels = audit.sorted_labels() if upload.task is Task.classification else None
        config = build_config(upload.task, upload.config, labels or [], bool(reader.multilabel))
        contamination = (
            _contamination(session, set_id, upload.training, max_record_bytes, beat, sample)
            if upload.training
            else None
        )
        beat()
        exact = _duplicate_groups(session, set_id, TestRecord.exact_fp)
        beat()
        normalized = _duplicate_groups(session, set_id, TestRecord.norm_fp)
        beat()
        conflicting = _duplicate_groups(session, set_id, TestRecord.norm_fp, conflicting=True)
    # A transaction of its own: on SQLite, a write in the one above would hold the database's lock, which the
    # beats (another connection) wait for, or would follow their writes on a stale snapshot and fail.
    kept = 0
    if sample is not None:
        with db.session() as session:
            kept = _keep_training_sample(session, set_id, sample, labels, bool(reader.multilabel))
    report = audit.finish(reader.records, exact, normalized, conflicting, contamination, reader.ignored_fields)
    if sample is not None:
        report["training_sample"] = {"labelled": sample.labelled, "kept": kept}
    values = {
        "audit": report,
        "sha256": staged.sha256,
        "size": reader.records,
        "n_bytes": staged.n_bytes,
        "labels": labels,
        "multilabel": bool(reader.multilabel),
        "settings": config.to_json(),
    }
    return staging.publish(db, set_id, values, if_absent)


def _check_unique_ids(session: Session, test_set_id: int) -> None:
    repeated = session.execute(
        select(func.min(TestRecord.line), func.max(TestRecord.line))
        .where(TestRecord.test_set_id == test_set_id)
        .group_by(TestRecord.record_id)
        .having(func.count() > 1)
        .order_by(func.max(TestRecord.line))
        .limit(20)
    ).all()
    if repeated:
        raise UploadInvalid("file", [(last, f"the id is already used on line {first}") for first, last in repeated])


def _duplicate_groups(
    session: Session, test_set_id: int, column: InstrumentedAttribute[str], conflicting: bool = False
) -> DuplicateGroups:
    """Groups of records sharing ``column``; with ``conflicting``, only groups whose targets differ."""
    condition: ColumnElement[bool] = (
        func.count(TestRecord.target_fp.distinct()) > 1 if conflicting else func.count() > 1
    )
    grouped = (
        select(column.label("fp"), func.count().label("n"), func.min(TestRecord.position).label("first"))
        .where(TestRecord.test_set_id == test_set_id)
        .group_by(column)
        .having(condition)
        .subquery()
    )
    groups, records = session.execute(select(func.count(), func.coalesce(func.sum(grouped.c.n), 0))).one()
    top = session.scalars(
        select(grouped.c.fp).order_by(grouped.c.n.desc(), grouped.c.first).limit(MAX_GROUP_EXAMPLES)
    ).all()
    examples = [
        list(
            session.scalars(
                select(TestRecord.record_id)
                .where(TestRecord.test_set_id == test_set_id, column == fp)
                .order_by(TestRecord.position)
                .limit(IDS_PER_GROUP)
            )
        )
        for fp in top
    ]
    return DuplicateGroups(int(groups), int(records), examples)


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, str]]) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(_TRAINING).on_conflict_do_nothing(), rows)


def _keep_training_sample(
    session: Session, test_set_id: int, sample: TrainingSample, labels: list[Any] | None, multilabel: bool
) -> int:
    """Stores the sampled training records whose target fits the set (labels matched by their text)."""
    lookup = {str(label): label for label in labels or []}

    def fitted(target: Any) -> Any:
        if labels is None:
            return target
        if isinstance(target, list) != multilabel:
            return None
        if multilabel:
            return sorted({lookup.get(str(v), v) for v in target}, key=str)
        return lookup.get(str(target), target)

    rows: list[dict[str, Any]] = []
    for text, target in sample.kept:
        value = fitted(target)
        if value is not None:
            rows.append({"test_set_id": test_set_id, "position": len(rows), "input": text, "target": value})
    for start in range(0, len(rows), INSERT_BATCH):
        session.execute(insert(TrainingRecord), rows[start : start + INSERT_BATCH])
    return len(rows)


def _contamination(
    session: Session,
    test_set_id: int,
    sources: list[TrainingSource],
    max_record_bytes: int,
    beat: Callable[[], None],
    sample: TrainingSample | None = None,
) -> Contamination:
    """Streams training fingerprints into a temporary table and joins the test set's against it."""
    connection = session.connection()
    # Outside a write transaction SQLite creates it for good, so one a failed upload left on a pooled connection goes.
    _TRAINING.drop(connection, checkfirst=True)
    _TRAINING.create(connection)
    batch: list[dict[str, str]] = []
    for source in sources:
        for fp in training_fingerprints(source, max_record_bytes, sample):
            batch.append({"fp": fp})
            if len(batch) >= INSERT_BATCH:
                _insert_ignoring_duplicates(session, batch)
                batch.clear()
                beat()
    if batch:
        _insert_ignoring_duplicates(session, batch)
    training_inputs = session.scalar(select(func.count()).select_from(_TRAINING)) or 0
    seen = (TestRecord.test_set_id == test_set_id) & TestRecord.norm_fp.in_(select(_TRAINING.c.fp))
    contaminated = session.scalar(select(func.count()).where(seen)) or 0
    example_ids = session.scalars(
        select(TestRecord.record_id).where(seen).order_by(TestRecord.position).limit(MAX_GROUP_EXAMPLES)
    ).all()
    _TRAINING.drop(connection)
    return Contamination(int(training_inputs), int(contaminated), list(example_ids))


# -- reads ---------------------------------------------------------------------------------------


def get_test_set(session: Session, test_set_id: int) -> TestSet:
    row = session.get(TestSet, test_set_id)
    if row is None or row.deleted_at is not None or row.version is None:
        raise TestSetNotFound(f"test set {test_set_id} not found")
    return row


def latest_by_name(session: Session, name: str) -> TestSet:
    row = session.scalars(
        select(TestSet)
        .where(TestSet.name == name, TestSet.deleted_at.is_(None), TestSet.version.is_not(None))
        .order_by(TestSet.version.desc())
        .limit(1)
    ).first()
    if row is None:
        raise TestSetNotFound(f"no test set is named {name!r}")
    return row


def list_test_sets(db: Database, name: str | None, limit: int, offset: int) -> tuple[list[TestSet], int]:
    live = (TestSet.deleted_at.is_(None)) & (TestSet.version.is_not(None))
    if name is not None:
        live = live & (TestSet.name == name)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(TestSet).where(live)) or 0
        rows = session.scalars(
            select(TestSet).where(live).order_by(TestSet.id.desc()).limit(limit).offset(offset)
        ).all()
    return list(rows), int(total)


def read_test_set(db: Database, test_set_id: int) -> TestSet:
    with db.session() as session:
        return get_test_set(session, test_set_id)


def config_of(row: TestSet) -> SetConfig:
    return SetConfig.from_json(row.settings)


@dataclass(frozen=True)
class InputPage:
    items: list[tuple[str, str]]
    """(id, input) pairs in set order."""
    next_cursor: int | None
    """Where the next page starts; None at the end."""
    total: int
    """Records in the whole set."""


def list_inputs(db: Database, test_set_id: int, cursor: int, limit: int) -> InputPage:
    """Ids and inputs from position ``cursor`` on.

    A page stops early once it holds INPUTS_PAGE_BYTES of ids and inputs, so a page of huge records stays
    bounded in memory; rows are streamed, not fetched ``limit`` at once.
    """
    items: list[tuple[str, str]] = []
    size = 0
    with db.session() as session:
        total = get_test_set(session, test_set_id).size
        rows = session.execute(
            select(TestRecord.position, TestRecord.record_id, TestRecord.input)
            .where(TestRecord.test_set_id == test_set_id, TestRecord.position >= cursor)
            .order_by(TestRecord.position)
            .limit(limit + 1)
            .execution_options(yield_per=100)
        )
        for position, record_id, text in rows:
            size += len(record_id) + len(text.encode("utf-8"))
            if len(items) == limit or (items and size > INPUTS_PAGE_BYTES):
                rows.close()
                return InputPage(items, int(position), total)
            items.append((record_id, text))
    return InputPage(items, None, total)


def iter_targets(session: Session, test_set_id: int, start: int = 0, stop: int | None = None) -> Iterator[Any]:
    """(id, target, group) rows in set order."""
    query = select(TestRecord.record_id, TestRecord.target, TestRecord.group).where(
        TestRecord.test_set_id == test_set_id, TestRecord.position >= start
    )
    if stop is not None:
        query = query.where(TestRecord.position < stop)
    yield from session.execute(query.order_by(TestRecord.position).execution_options(yield_per=10_000))


@dataclass(frozen=True)
class StoredTargets:
    ids: list[str]
    targets: list[Any]
    groups: list[str | None] | None
    """Each record's group; None when no record of the set has one."""


class _TargetCache:
    """Recently scored sets' ids and targets, in this process: sets are immutable, so entries never go stale."""

    def __init__(self, max_records: int) -> None:
        self._max = max_records
        self._entries: OrderedDict[tuple[str, int, str], StoredTargets] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Database, row: TestSet) -> StoredTargets:
        key = (db.url, row.id, row.sha256 or "")
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        loaded = _load_targets(db, row.id)
        with self._lock:
            self._entries[key] = loaded
            while sum(len(e.ids) for e in self._entries.values()) > self._max and len(self._entries) > 1:
                self._entries.popitem(last=False)
        return loaded


_targets = _TargetCache(TARGET_CACHE_RECORDS)


def _load_targets(db: Database, test_set_id: int) -> StoredTargets:
    ids: list[str] = []
    targets: list[Any] = []
    groups: list[str | None] = []
    with db.session() as session:
        for record_id, target, group in iter_targets(session, test_set_id):
            ids.append(record_id)
            targets.append(target)
            groups.append(group)
    return StoredTargets(ids, targets, groups if any(g is not None for g in groups) else None)


def load_targets(db: Database, row: TestSet) -> StoredTargets:
    """Ids, hidden targets and groups in set order; for scoring only, never for a response. Callers must not mutate."""
    return _targets.get(db, row)


def load_inputs(db: Database, test_set_id: int, start: int, stop: int) -> list[str]:
    """Inputs at positions start..stop of the set followed by its training sample (positions from its size on)."""
    with db.session() as session:
        row = session.get(TestSet, test_set_id)
        size = row.size if row is not None else 0
        inputs = list(
            session.scalars(
                select(TestRecord.input)
                .where(
                    TestRecord.test_set_id == test_set_id,
                    TestRecord.position >= start,
                    TestRecord.position < min(stop, size),
                )
                .order_by(TestRecord.position)
            )
        )
        if stop > size:
            inputs += session.scalars(
                select(TrainingRecord.input)
                .where(
                    TrainingRecord.test_set_id == test_set_id,
                    TrainingRecord.position >= max(start, size) - size,
                    TrainingRecord.position < stop - size,
                )
                .order_by(TrainingRecord.position)
            )
        return inputs


def training_size(db: Database, test_set_id: int) -> int:
    with db.session() as session:
        count = session.scalar(select(func.count()).where(TrainingRecord.test_set_id == test_set_id))
    return int(count or 0)


def load_training_targets(db: Database, test_set_id: int) -> list[Any]:
    """The kept training sample's targets in order; for scoring only, never for a response."""
    with db.session() as session:
        return list(
            session.scalars(
                select(TrainingRecord.target)
                .where(TrainingRecord.test_set_id == test_set_id)
                .order_by(TrainingRecord.position)
            )
        )


def delete_test_set(db: Database, test_set_id: int) -> None:
    """Soft-deletes the set (its name's versions stay unique), dropping its records and ladder state.

    Evaluations still queued or running on it fail; finished ones keep their results.
    """
    with db.session() as session:
        row = get_test_set(session, test_set_id)
        row.deleted_at = utcnow()
        session.execute(delete(TestRecord).where(TestRecord.test_set_id == test_set_id))
        session.execute(delete(TrainingRecord).where(TrainingRecord.test_set_id == test_set_id))
        session.execute(delete(ScoringState).where(ScoringState.test_set_id == test_set_id))
        session.execute(
            update(Evaluation)
            .where(Evaluation.test_set_id == test_set_id, Evaluation.status.in_(("queued", "running")))
            .values(status="failed", error="the test set was deleted", finished_at=utcnow())
        )
