"""The cron scheduler fires on its ticks, and two replicas on one database run one check per tick."""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import func, select

from service.app import create_app
from service.db.models import DriftCheck
from service.db.session import Database
from service.monitoring.scheduler import CronScheduler, check_cron
from service.settings import Settings
from tests.conftest import auth
from tests.monitoring_fixtures import MODEL, insert_rows, iso, synthetic_rows

EVERY_SECOND = "* * * * * *"


def test_fires_on_each_tick_never_early_and_survives_a_failing_run() -> None:
    fired: list[tuple[datetime, datetime]] = []

    async def fire(tick: datetime) -> None:
        fired.append((tick, datetime.now(UTC)))
        if len(fired) == 1:
            raise RuntimeError("the first run fails; the schedule goes on")

    async def main() -> None:
        scheduler = CronScheduler(EVERY_SECOND, fire)
        scheduler.start()
        await asyncio.sleep(3.2)
        await scheduler.aclose()

    asyncio.run(main())
    ticks = [tick for tick, _ in fired]
    assert len(ticks) >= 2
    assert all(tick.microsecond == 0 for tick in ticks)
    assert all(later - earlier == timedelta(seconds=1) for earlier, later in zip(ticks, ticks[1:], strict=False))
    assert all(at >= tick for tick, at in fired)


def test_bad_cron_expressions_are_refused() -> None:
    assert check_cron("*/30 * * * *") == "*/30 * * * *"
    for bad in ("nope", "61 * * * *", "* * *"):
        with pytest.raises(ValueError):
            check_cron(bad)
    with pytest.raises(ValidationError, match="cron"):
        Settings(drift_schedule="every hour")


def test_two_replicas_run_one_check_per_tick(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Scheduled checks of an idle model fail fast (no traffic in the window): the point is who runs them."""
    start = datetime.now(UTC) - timedelta(days=3)
    insert_rows(database_url, tmp_path, synthetic_rows(60, shifted=False, seed=1, start=start))
    settings = make_settings(
        database_url=database_url, drift_executor="thread", drift_min_rows=50, drift_schedule=EVERY_SECOND
    )
    caplog.set_level(logging.INFO, logger="heldout.drift")
    failed_before = failed_count()
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        reference = first.post(
            "/v1/drift/reference",
            headers=auth("evaluator"),
            json={"from": iso(start), "to": iso(start + timedelta(hours=1)), "model": MODEL},
        )
        assert reference.status_code == 201, reference.text
        time.sleep(3.5)
        assert first.get("/healthz").status_code == 200 and second.get("/healthz").status_code == 200
    db = Database(database_url)
    try:
        with db.session() as session:
            per_tick = session.execute(
                select(DriftCheck.tick, func.count()).where(DriftCheck.tick.is_not(None)).group_by(DriftCheck.tick)
            ).all()
            checks = session.scalars(select(DriftCheck)).all()
    finally:
        db.dispose()
    assert len(per_tick) >= 2 and all(n == 1 for _, n in per_tick), per_tick
    assert any("taken by another replica" in r.getMessage() for r in caplog.records)
    assert all(c.created_by == "schedule" and c.model == MODEL and c.status == "failed" for c in checks)
    # A check still running at shutdown is failed by it; the others failed for want of traffic.
    idle = [c for c in checks if "HELDOUT_DRIFT_MIN_ROWS" in (c.error or "")]
    assert idle and failed_count() - failed_before >= len(idle)


def failed_count() -> float:
    return REGISTRY.get_sample_value("heldout_drift_checks_total", {"status": "failed"}) or 0.0
