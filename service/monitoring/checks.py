"""Drift checks: queued as rows, run one at a time in the worker, stored, turned into gauges.

A check is a row first, so it is visible (queued) before it runs, and a scheduled check is keyed by its
cron tick: the unique (model, tick) constraint lets exactly one replica (or worker process) insert it, on
SQLite and PostgreSQL alike; the others see the conflict and stand down. The Evidently work runs in a
process pool (or a thread) behind a semaphore, so "running" means running. A failure of any kind
becomes a failed check with its error; nothing escapes into the serving path.
"""

import asyncio
import logging
import math
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from monitors.drift_config import DriftConfig
from monitors.drift_gauges import DriftSnapshot, count_check, publish_drift
from service.db.models import DriftCheck, utcnow
from service.db.session import Database
from service.monitoring.drift_worker import CheckFailed, CheckJob, CheckOutput, init_process, run_check
from service.monitoring.errors import CheckNotFound, CheckQueueFull, ReportDeleted, ReportNotReady
from service.monitoring.times import as_utc
from service.monitoring.window import Window
from service.settings import Settings

log = logging.getLogger("heldout.drift")

UNFINISHED = ("queued", "running")
# Checks waiting in one process beyond this are refused (CheckQueueFull): each holds a worker for seconds.
MAX_PENDING = 8
# When a refused check is worth asking for again.
QUEUE_RETRY_S = 30
# Grace past HELDOUT_DRIFT_TIMEOUT_S before another replica declares an unfinished check abandoned.
ABANDON_GRACE = timedelta(seconds=60)


def drift_config(settings: Settings) -> DriftConfig:
    return DriftConfig(
        methods=dict(settings.drift_methods),
        thresholds=dict(settings.drift_thresholds),
        drift_share=settings.drift_share,
        text_sample=settings.drift_text_sample,
        embedding_sample=settings.drift_embedding_sample,
    )


def _result_json(output: CheckOutput) -> dict[str, Any]:
    columns = []
    for column in output.columns:
        entry = asdict(column)
        entry["score"] = column.score if math.isfinite(column.score) else None
        columns.append(entry)
    return {
        "columns": columns,
        "share_of_drifted_columns": output.share_of_drifted_columns,
        "dataset_drift": output.dataset_drift,
        "estimated_performance": output.estimated_performance,
        "estimated_performance_reason": output.estimated_performance_reason,
    }


def snapshot_of(row: DriftCheck) -> DriftSnapshot | None:
    """The gauge values a succeeded check stands for."""
    if row.status != "succeeded" or row.result is None or row.finished_at is None:
        return None
    result = row.result
    scores = [(c["column"], c["method"], c["score"]) for c in result["columns"] if c["score"] is not None]
    estimate = result.get("estimated_performance") or {}
    return DriftSnapshot(
        row.model,
        as_utc(row.finished_at).timestamp(),
        result["share_of_drifted_columns"],
        result["dataset_drift"],
        scores,
        estimate.get("accuracy", {}).get("value"),
        estimate.get("f1", {}).get("value"),
    )


class DriftChecks:
    def __init__(self, db: Database, settings: Settings, owner: str) -> None:
        self._db = db
        self._settings = settings
        self._owner = owner
        self._executor: Executor | None = None
        self._slot = asyncio.Semaphore(1)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._inserting = 0
        """Submissions admitted whose row is still being inserted: each already holds a place in MAX_PENDING."""

    def _make_executor(self) -> Executor:
        if self._settings.drift_executor == "thread":
            return ThreadPoolExecutor(1, thread_name_prefix="heldout-drift")
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init_process)

    def _job(self, row: DriftCheck) -> CheckJob:
        return CheckJob(
            self._db.url,
            row.reference_id,
            Window(row.model, as_utc(row.window_from), as_utc(row.window_to)),
            self._settings.drift_max_rows,
            self._settings.drift_min_rows,
            drift_config(self._settings),
        )

    def _insert(
        self, model: str, reference_id: int, window: Window, created_by: str, tick: datetime | None
    ) -> DriftCheck | None:
        try:
            with self._db.session() as session:
                row = DriftCheck(
                    model=model,
                    reference_id=reference_id,
                    status="queued",
                    tick=tick,
                    window_from=window.start,
                    window_to=window.end,
                    owner=self._owner,
                    created_by=created_by,
                )
                session.add(row)
            return row
        except IntegrityError:
            if tick is None:
                raise
            return None

    async def submit(
        self, model: str, reference_id: int, window: Window, created_by: str, tick: datetime | None = None
    ) -> DriftCheck | None:
        """Queue a check; None when ``tick`` was already taken by another replica.

        The place is reserved before the insert is awaited: counting only started tasks let concurrent
        requests all pass the check while their inserts were in flight.
        """
        pending = len(self._tasks) + self._inserting
        if pending >= MAX_PENDING:
            raise CheckQueueFull(f"{pending} drift checks are already pending here", retry_after_s=QUEUE_RETRY_S)
        self._inserting += 1
        try:
            row = await asyncio.to_thread(self._insert, model, reference_id, window, created_by, tick)
        finally:
            self._inserting -= 1
        if row is None:
            log.info("tick %s of %s is taken by another replica", tick, model)
            return None
        task = asyncio.get_running_loop().create_task(self._run(row), name=f"heldout-drift-check-{row.id}")
        self._tasks[row.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(row.id, None))
        return row

    async def _run(self, row: DriftCheck) -> None:
        async with self._slot:
            started = time.monotonic()
            await asyncio.to_thread(self._set, row.id, status="running", started_at=utcnow())
            output, error = await self._compute(self._job(row))
            if output is not None:
                await asyncio.to_thread(self._succeed, row.id, output)
            else:
                await asyncio.to_thread(self._set, row.id, status="failed", error=error, finished_at=utcnow())
                log.warning("drift check %d failed: %s", row.id, error)
            count_check("succeeded" if output is not None else "failed", time.monotonic() - started)

    async def _compute(self, job: CheckJob) -> tuple[CheckOutput | None, str]:
        if self._executor is None:
            self._executor = self._make_executor()
        future = asyncio.get_running_loop().run_in_executor(self._executor, run_check, job)
        try:
            return await asyncio.wait_for(future, self._settings.drift_timeout_s), ""
        except CheckFailed as exc:
            return None, str(exc)
        except TimeoutError:
            self._discard_executor()
            return None, f"no result within HELDOUT_DRIFT_TIMEOUT_S ({self._settings.drift_timeout_s:g} s)"
        except BrokenProcessPool:
            self._discard_executor()
            return None, "the drift worker process died (out of memory?)"
        except Exception as exc:
            log.exception("drift check crashed")
            return None, f"{type(exc).__name__}: {exc}"

    def _discard_executor(self) -> None:
        """A stuck or broken worker is left to finish alone; the next check gets a fresh one."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _set(self, check_id: int, **values: Any) -> None:
        with self._db.session() as session:
            session.execute(update(DriftCheck).where(DriftCheck.id == check_id).values(**values))

    def _succeed(self, check_id: int, output: CheckOutput) -> None:
        with self._db.session() as session:
            row = session.get(DriftCheck, check_id)
            if row is None:
                return
            row.status = "succeeded"
            row.rows = output.rows
            row.result = _result_json(output)
            row.report = output.report
            row.finished_at = utcnow()
        snapshot = snapshot_of(row)
        if snapshot is not None:
            publish_drift(snapshot)

    async def aclose(self) -> None:
        """Stop waiting for checks; those unfinished here are recorded as failed."""
        tasks = list(self._tasks.items())
        for _, task in tasks:
            task.cancel()
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
        if tasks:
            await asyncio.to_thread(self._fail_unfinished, [check_id for check_id, _ in tasks])
        if self._executor is not None:
            self._discard_executor()

    def _fail_unfinished(self, ids: list[int]) -> None:
        with self._db.session() as session:
            session.execute(
                update(DriftCheck)
                .where(DriftCheck.id.in_(ids), DriftCheck.status.in_(UNFINISHED))
                .values(status="failed", error="the server stopped before the check finished", finished_at=utcnow())
            )


def sweep_abandoned(db: Database, timeout_s: float) -> int:
    """Checks left unfinished by a replica that died are failed once their timeout has long passed."""
    cutoff = utcnow() - timedelta(seconds=timeout_s) - ABANDON_GRACE
    with db.session() as session:
        result = session.execute(
            update(DriftCheck)
            .where(DriftCheck.status.in_(UNFINISHED), DriftCheck.created_at < cutoff)
            .values(status="failed", error="abandoned: its replica stopped before finishing it", finished_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def latest_snapshots(db: Database) -> list[DriftSnapshot]:
    """The newest succeeded check of each model, as gauge values."""
    with db.session() as session:
        newest = (
            select(DriftCheck.model, func.max(DriftCheck.finished_at).label("finished_at"))
            .where(DriftCheck.status == "succeeded")
            .group_by(DriftCheck.model)
            .subquery()
        )
        rows = session.scalars(
            select(DriftCheck).join(
                newest, (DriftCheck.model == newest.c.model) & (DriftCheck.finished_at == newest.c.finished_at)
            )
        ).all()
    return [s for s in map(snapshot_of, rows) if s is not None]


def get_check(db: Database, check_id: int) -> DriftCheck:
    with db.session() as session:
        row = session.get(DriftCheck, check_id)
    if row is None:
        raise CheckNotFound(f"drift check {check_id} does not exist")
    return row


def list_checks(
    db: Database, model: str | None, status: str | None, limit: int, offset: int
) -> tuple[list[DriftCheck], int]:
    query = select(DriftCheck)
    count = select(func.count()).select_from(DriftCheck)
    for condition in (
        DriftCheck.model == model if model is not None else None,
        DriftCheck.status == status if status is not None else None,
    ):
        if condition is not None:
            query, count = query.where(condition), count.where(condition)
    with db.session() as session:
        rows = session.scalars(query.order_by(DriftCheck.id.desc()).limit(limit).offset(offset)).all()
        total = int(session.scalar(count) or 0)
    return list(rows), total


def check_report(db: Database, check_id: int) -> bytes:
    """The gzip'd HTML report; ReportNotReady until the check has succeeded, ReportDeleted after retention."""
    with db.session() as session:
        row = session.get(DriftCheck, check_id, options=[undefer(DriftCheck.report)])
        if row is None:
            raise CheckNotFound(f"drift check {check_id} does not exist")
        status, report = row.status, row.report
    if status != "succeeded":
        raise ReportNotReady(f"drift check {check_id} is {status}; only a succeeded check has a report")
    if report is None:
        raise ReportDeleted(f"the report of drift check {check_id} was deleted after HELDOUT_LOG_RETENTION")
    return report
