"""The part of a drift check that runs in the worker (a separate process by default): read, compute, render.

The worker opens its own database connection and reads the reference and the window itself, so neither
the rows nor their JSON parsing pass through the serving process. It runs at a lower CPU priority and
with single-threaded BLAS so that it yields to inference.
"""

import gzip
import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import undefer

from monitors.drift import run_drift
from monitors.drift_config import ColumnDrift, DriftConfig
from monitors.drift_features import FeatureTable
from monitors.projection import Projection
from service.db.models import DriftReference
from service.db.session import Database
from service.monitoring.performance_estimate import EstimateOutcome, estimate_window
from service.monitoring.window import Window, read_window

log = logging.getLogger("heldout.drift.worker")
WORKER_NICENESS = 10


class CheckFailed(Exception):
    """Why a check failed, as a plain message: it must cross a process boundary."""


@dataclass(frozen=True)
class CheckJob:
    database_url: str
    reference_id: int
    window: Window
    max_rows: int
    min_rows: int
    config: DriftConfig


@dataclass(frozen=True)
class CheckOutput:
    rows: int
    columns: list[ColumnDrift]
    share_of_drifted_columns: float
    dataset_drift: bool
    report: bytes
    """gzip'd HTML."""
    estimated_performance: dict[str, Any] | None = None
    """CBPE's label-free accuracy and F1 of the window (``monitoring.performance_estimate``)."""
    estimated_performance_reason: str | None = None


def init_process() -> None:
    """Initializer of the worker process: lower priority, one BLAS thread."""
    os.nice(WORKER_NICENESS)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _read(job: CheckJob) -> tuple[FeatureTable, Projection | None, FeatureTable, EstimateOutcome]:
    db = Database(job.database_url)
    try:
        with db.session() as session:
            reference = session.get(DriftReference, job.reference_id, options=[undefer(DriftReference.data)])
            if reference is None:
                raise CheckFailed(f"drift reference {job.reference_id} no longer exists")
            table = FeatureTable.from_bytes(reference.data)
            projection = Projection.from_json(reference.projection) if reference.projection else None
            config = job.config
            current = read_window(
                session, job.window, job.max_rows, config.text_sample, config.embedding_sample, config.seed
            )
            estimate = estimate_window(session, job.window, job.max_rows, config.seed)
    finally:
        db.dispose()
    return table, projection, current, estimate


def run_check(job: CheckJob) -> CheckOutput:
    try:
        reference, projection, current, estimate = _read(job)
        if len(current) < job.min_rows:
            raise CheckFailed(
                f"the window has {len(current)} logged predictions of {job.window.model}; "
                f"a check needs HELDOUT_DRIFT_MIN_ROWS ({job.min_rows})"
            )
        outcome = run_drift(reference, current, projection, job.config)
    except CheckFailed:
        raise
    except Exception as exc:
        log.exception("drift check against reference %d failed", job.reference_id)
        raise CheckFailed(f"{type(exc).__name__}: {exc}") from None
    return CheckOutput(
        len(current),
        outcome.columns,
        outcome.share_of_drifted_columns,
        outcome.dataset_drift,
        gzip.compress(outcome.html.encode("utf-8"), 6),
        estimate.estimate,
        estimate.reason,
    )
