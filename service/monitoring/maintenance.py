"""Periodic work of every replica: gauges reloaded from the database, old rows pruned, dead checks failed.

Reloading makes every replica (and every worker process) export the same drift and online values,
whichever of them ran the check or took the feedback, and makes those values survive a restart.
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, select, update

from monitors.drift_gauges import publish_drift, publish_online
from monitors.online_accuracy import OnlineWindow
from service.db.models import DriftCheck, PredictionLogEntry, utcnow
from service.db.session import Database
from service.monitoring.checks import latest_snapshots, sweep_abandoned
from service.monitoring.feedback import models_with_feedback, window_scores
from service.settings import Settings

log = logging.getLogger("heldout.monitoring")

# Rows deleted per statement, so pruning a large backlog never holds a long lock.
PRUNE_BATCH = 5000


def online_window(settings: Settings) -> OnlineWindow:
    return OnlineWindow(settings.online_window_size, settings.online_window)


def refresh_gauges(db: Database, window: OnlineWindow) -> None:
    for snapshot in latest_snapshots(db):
        publish_drift(snapshot)
    for model in models_with_feedback(db):
        scores = window_scores(db, model, window)
        if scores is not None:
            publish_online(model, scores)


def prune(db: Database, retention: timedelta) -> int:
    """Delete log rows (their feedback cascades) and drop drift reports older than the retention."""
    cutoff = utcnow() - retention
    deleted = 0
    while True:
        with db.session() as session:
            expired = select(PredictionLogEntry.id).where(PredictionLogEntry.created_at < cutoff).limit(PRUNE_BATCH)
            ids = list(session.scalars(expired))
            if ids:
                session.execute(delete(PredictionLogEntry).where(PredictionLogEntry.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH:
            break
    with db.session() as session:
        expired_reports = (DriftCheck.finished_at < cutoff, DriftCheck.report.is_not(None))
        session.execute(update(DriftCheck).where(*expired_reports).values(report=None))
    return deleted


def maintain(db: Database, settings: Settings) -> None:
    pruned = prune(db, settings.log_retention)
    if pruned:
        log.info("pruned %d prediction log rows older than HELDOUT_LOG_RETENTION", pruned)
    abandoned = sweep_abandoned(db, settings.drift_timeout_s)
    if abandoned:
        log.warning("marked %d abandoned drift checks failed", abandoned)
    refresh_gauges(db, online_window(settings))


async def maintain_forever(db: Database, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.monitor_interval_s)
        try:
            await asyncio.to_thread(maintain, db, settings)
        except Exception:
            log.exception("monitoring maintenance failed; retrying in %g s", settings.monitor_interval_s)
