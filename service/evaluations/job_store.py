"""Evaluation jobs in the database: creation with shards, atomic lease claims, renewal, completion.

A claim is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``: on PostgreSQL the inner
select takes ``FOR UPDATE SKIP LOCKED``, so concurrent replicas skip each other's rows; on SQLite the
statement runs under the database's single write lock. A shard's predictions and the job's progress
commit in one transaction that also checks the lease is still this worker's, so a shard taken over
after its lease expired is counted once, by whoever holds it when it finishes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import Evaluation, EvaluationShard, TestSet, utcnow
from service.db.session import Database
from service.evaluations.errors import EvaluationNotFound
from service.tasks import Task

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    task: Task
    multilabel: bool
    """With ``task``, what the model's outputs can be scored as: a set of labels per input, or one."""


@dataclass(frozen=True)
class ClaimedShard:
    id: int
    evaluation_id: int
    idx: int
    start: int
    stop: int
    attempts: int
    test_set_id: int
    options: dict[str, Any]


def db_now(session: Session) -> datetime:
    """The database's clock on PostgreSQL, so replicas on skewed hosts agree on lease expiry."""
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.scalar(select(func.now()))  # type: ignore[assignment]
        return now
    return utcnow()


def create(
    db: Database,
    test_set: TestSet,
    model: ModelIdentity,
    *,
    metrics: list[str],
    extra_metrics: list[str],
    options: dict[str, Any],
    shard_size: int,
    created_by: str,
    extra: int = 0,
) -> Evaluation:
    """A queued job with its shards, in one transaction; ``extra`` positions past the set's (its training
    sample, for the generalization gap) are run too."""
    total = test_set.size + extra
    with db.session() as session:
        job = Evaluation(
            status="queued",
            test_set_id=test_set.id,
            test_set_name=test_set.name,
            test_set_version=test_set.version,
            test_set_sha256=test_set.sha256,
            task=test_set.task,
            model=model.name,
            model_version=model.version,
            metrics=metrics,
            extra_metrics=extra_metrics,
            options=options,
            total=total,
            done=0,
            created_by=created_by,
        )
        session.add(job)
        session.flush()
        session.add_all(
            EvaluationShard(
                evaluation_id=job.id,
                idx=i,
                start=start,
                stop=min(start + shard_size, total),
                status="pending",
                attempts=0,
            )
            for i, start in enumerate(range(0, total, shard_size))
        )
    return job


def claim(db: Database, owner: str, model: ModelIdentity, lease: timedelta) -> ClaimedShard | None:
    """Lease the first shard not done whose lease is free or expired, of a job for this model version."""
    with db.session() as session:
        now = db_now(session)
        candidate = (
            select(EvaluationShard.id)
            .join(Evaluation, Evaluation.id == EvaluationShard.evaluation_id)
            .where(
                Evaluation.status.in_(ACTIVE),
                Evaluation.model == model.name,
                Evaluation.model_version == model.version,
                EvaluationShard.status != "done",
                or_(EvaluationShard.lease_expires_at.is_(None), EvaluationShard.lease_expires_at < now),
            )
            .order_by(EvaluationShard.evaluation_id, EvaluationShard.idx)
            .limit(1)
            .with_for_update(of=EvaluationShard, skip_locked=True)
            .scalar_subquery()
        )
        row = session.execute(
            update(EvaluationShard)
            .where(EvaluationShard.id == candidate)
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=now + lease,
                attempts=EvaluationShard.attempts + 1,
            )
            .returning(
                EvaluationShard.id,
                EvaluationShard.evaluation_id,
                EvaluationShard.idx,
                EvaluationShard.start,
                EvaluationShard.stop,
                EvaluationShard.attempts,
            )
        ).first()
        if row is None:
            return None
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == row.evaluation_id, Evaluation.status == "queued")
            .values(status="running", started_at=now)
        )
        job = session.get(Evaluation, row.evaluation_id)
        assert job is not None
        return ClaimedShard(
            row.id, row.evaluation_id, row.idx, row.start, row.stop, row.attempts, job.test_set_id, dict(job.options)
        )


def _held(shard_id: int, owner: str) -> Any:
    return and_(
        EvaluationShard.id == shard_id, EvaluationShard.lease_owner == owner, EvaluationShard.status == "running"
    )


def renew(db: Database, shard_id: int, owner: str, lease: timedelta) -> bool:
    """Extend the lease; False if it was lost (taken over after expiring)."""
    with db.session() as session:
        now = db_now(session)
        result = session.execute(
            update(EvaluationShard).where(_held(shard_id, owner)).values(lease_expires_at=now + lease)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(db: Database, shard: ClaimedShard, owner: str, output: Sequence[Any]) -> bool:
    """Store the shard's predictions and count its examples, only if this worker still holds the lease."""
    assert len(output) == shard.stop - shard.start
    with db.session() as session:
        result = session.execute(
            update(EvaluationShard)
            .where(_held(shard.id, owner))
            .values(status="done", output=list(output), lease_owner=owner, lease_expires_at=None, error=None)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        session.execute(
            update(Evaluation)
            .where(Evaluation.id == shard.evaluation_id)
            .values(done=Evaluation.done + (shard.stop - shard.start))
        )
    return True


def release(
    db: Database,
    shard: ClaimedShard,
    owner: str,
    error: str | None,
    max_attempts: int,
    *,
    count_attempt: bool = True,
    retry_in: timedelta = timedelta(0),
) -> bool:
    """Give a shard back after a failure, or unfinished (no error); True if its job failed for good.

    ``count_attempt=False`` (shutdown, a busy model) does not count the attempt against the shard.
    """
    with db.session() as session:
        now = db_now(session)
        result = session.execute(
            update(EvaluationShard)
            .where(_held(shard.id, owner))
            .values(
                status="pending",
                lease_owner=None,
                lease_expires_at=now + retry_in,
                error=error,
                attempts=EvaluationShard.attempts - (0 if count_attempt else 1),
            )
        )
        if not result.rowcount or error is None or shard.attempts < max_attempts:  # type: ignore[attr-defined]
            return False
        failed = session.execute(
            update(Evaluation)
            .where(Evaluation.id == shard.evaluation_id, Evaluation.status.in_(ACTIVE))
            .values(
                status="failed",
                error=f"shard {shard.idx} failed {shard.attempts} times; last error: {error}",
                finished_at=now,
            )
        )
        return bool(failed.rowcount)  # type: ignore[attr-defined]


def claim_reduce(db: Database, owner: str, lease: timedelta) -> int | None:
    """Lease the reduction of a running job whose shards are all done."""
    with db.session() as session:
        now = db_now(session)
        pending = exists().where(EvaluationShard.evaluation_id == Evaluation.id, EvaluationShard.status != "done")
        candidate = (
            select(Evaluation.id)
            .where(
                Evaluation.status == "running",
                ~pending,
                or_(Evaluation.lease_expires_at.is_(None), Evaluation.lease_expires_at < now),
            )
            .order_by(Evaluation.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return session.scalar(
            update(Evaluation)
            .where(Evaluation.id == candidate)
            .values(lease_owner=owner, lease_expires_at=now + lease)
            .returning(Evaluation.id)
        )


def _outputs(db: Database, evaluation_id: int) -> list[Any]:
    out: list[Any] = []
    with db.session() as session:
        for output in session.scalars(
            select(EvaluationShard.output)
            .where(EvaluationShard.evaluation_id == evaluation_id)
            .order_by(EvaluationShard.idx)
        ):
            out.extend(output or [])
    return out


def _label(output: Any) -> Any:
    return output["label"] if isinstance(output, dict) else output


def predictions(db: Database, evaluation_id: int) -> list[Any]:
    """The job's predictions in order: the test set's, then (with the generalization gap) the training sample's."""
    return [_label(output) for output in _outputs(db, evaluation_id)]


def predictions_and_probabilities(db: Database, evaluation_id: int) -> tuple[list[Any], list[list[float]] | None]:
    """Predictions, and a single-label classifier's probabilities per prediction (None where any lacks them)."""
    outputs = _outputs(db, evaluation_id)
    labels = [_label(output) for output in outputs]
    if not outputs or not all(isinstance(output, dict) for output in outputs):
        return labels, None
    return labels, [output["probabilities"] for output in outputs]


def finish(
    db: Database, evaluation_id: int, owner: str, result: dict[str, Any] | None, error: str | None
) -> Evaluation | None:
    """Record the outcome if this worker still holds the reduction; the finished row, else None."""
    with db.session() as session:
        now = db_now(session)
        done = session.execute(
            update(Evaluation)
            .where(Evaluation.id == evaluation_id, Evaluation.status == "running", Evaluation.lease_owner == owner)
            .values(
                status="failed" if error else "succeeded",
                result=result,
                error=error,
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            return None
        return session.get(Evaluation, evaluation_id)


def get(db: Database, evaluation_id: int) -> Evaluation:
    with db.session() as session:
        job = session.get(Evaluation, evaluation_id)
        if job is None:
            raise EvaluationNotFound(f"evaluation {evaluation_id} not found")
        return job


def list_jobs(db: Database, filters: dict[str, Any], limit: int, offset: int) -> tuple[list[Evaluation], int]:
    conditions = [getattr(Evaluation, name) == value for name, value in filters.items() if value is not None]
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Evaluation).where(*conditions)) or 0
        rows = session.scalars(
            select(Evaluation).where(*conditions).order_by(Evaluation.id.desc()).limit(limit).offset(offset)
        ).all()
    return list(rows), int(total)
