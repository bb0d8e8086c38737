"""Start-up and shutdown of monitoring, called from the app's lifespan."""

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI

from service.db.session import Database
from service.inference.engine import InferenceEngine
from service.monitoring.checks import DriftChecks
from service.monitoring.maintenance import maintain, maintain_forever
from service.monitoring.references import latest_reference
from service.monitoring.scheduler import CronScheduler
from service.monitoring.window import Window
from service.settings import Settings

log = logging.getLogger("heldout.monitoring")


@dataclass
class Monitoring:
    checks: DriftChecks
    scheduler: CronScheduler | None
    maintenance: "asyncio.Task[None]"


def scheduled_target(db: Database, model: str | None) -> tuple[str, int] | None:
    """(model, reference id) a tick checks: the served model's newest reference, else the newest reference."""
    with db.session() as session:
        reference = latest_reference(session, model)
        return None if reference is None else (reference.model, reference.id)


async def start_monitoring(app: FastAPI, settings: Settings, db: Database) -> None:
    checks = DriftChecks(db, settings, owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(maintain, db, settings)
    maintenance = asyncio.get_running_loop().create_task(maintain_forever(db, settings), name="heldout-monitoring")

    async def fire(tick: datetime) -> None:
        engine: InferenceEngine | None = app.state.inference
        target = await asyncio.to_thread(scheduled_target, db, engine.loaded.name if engine is not None else None)
        if target is None:
            log.info("scheduled drift check skipped: no drift reference yet (POST /v1/drift/reference)")
            return
        model, reference_id = target
        await checks.submit(model, reference_id, Window(model, tick - settings.drift_window, tick), "schedule", tick)

    scheduler = CronScheduler(settings.drift_schedule, fire) if settings.drift_schedule else None
    if scheduler is not None:
        scheduler.start()
    app.state.monitoring = Monitoring(checks, scheduler, maintenance)


async def stop_monitoring(app: FastAPI) -> None:
    monitoring: Monitoring | None = getattr(app.state, "monitoring", None)
    if monitoring is None:
        return
    if monitoring.scheduler is not None:
        await monitoring.scheduler.aclose()
    monitoring.maintenance.cancel()
    await asyncio.gather(monitoring.maintenance, return_exceptions=True)
    await monitoring.checks.aclose()
