"""What a drift request asks for → a reference built, or a check queued, with the defaults filled in.

A reference comes from a test set (through the served model) or from a window of a model's traffic; a
check compares a window (default: the last HELDOUT_DRIFT_WINDOW) against a reference (default: the
served model's newest) and is refused up front when the window has too few rows to say anything.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime

from service.db.models import DriftCheck, DriftReference, utcnow
from service.db.session import Database
from service.inference.engine import InferenceEngine
from service.monitoring import reference_builder
from service.monitoring.checks import DriftChecks
from service.monitoring.errors import ModelNotNamed, NoReference, TooFewRows
from service.monitoring.references import get_reference, latest_reference
from service.monitoring.times import as_utc
from service.monitoring.window import Window, count_rows
from service.settings import Settings


@dataclass(frozen=True)
class CheckTarget:
    model: str
    reference_id: int
    window: Window


def _served_name(engine: InferenceEngine | None) -> str | None:
    return engine.loaded.name if engine is not None else None


async def build_reference(
    db: Database,
    settings: Settings,
    engine: InferenceEngine | None,
    *,
    test_set: int | None,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
    created_by: str,
) -> DriftReference:
    """From ``test_set`` when given, else from the window ``start``..``end`` of ``model`` (default: the served one)."""
    if test_set is not None:
        return await reference_builder.from_test_set(db, settings, engine, test_set, created_by)
    assert start is not None and end is not None
    model = model or _served_name(engine)
    if model is None:
        raise ModelNotNamed("model: no model is served; name the model whose traffic to use")
    return await reference_builder.from_window(db, settings, model, start, end, created_by)


def check_target(
    db: Database,
    settings: Settings,
    engine: InferenceEngine | None,
    reference: int | None,
    start: datetime | None,
    end: datetime | None,
) -> CheckTarget:
    """The reference and window a check compares; refused when the window holds under HELDOUT_DRIFT_MIN_ROWS."""
    with db.session() as session:
        if reference is not None:
            ref = get_reference(session, reference)
        else:
            latest = latest_reference(session, _served_name(engine))
            if latest is None:
                raise NoReference("no drift reference yet: POST /v1/drift/reference first")
            ref = latest
        end = as_utc(end) if end is not None else as_utc(utcnow())
        start = as_utc(start) if start is not None else end - settings.drift_window
        window = Window(ref.model, start, end)
        n = count_rows(session, window)
        if n < settings.drift_min_rows:
            raise TooFewRows(
                f"the window from {start.isoformat()} to {end.isoformat()} has {n} logged predictions of "
                f"{ref.model}; a check needs HELDOUT_DRIFT_MIN_ROWS ({settings.drift_min_rows})"
            )
        return CheckTarget(ref.model, ref.id, window)


async def request_check(
    db: Database,
    settings: Settings,
    checks: DriftChecks,
    engine: InferenceEngine | None,
    *,
    reference: int | None,
    start: datetime | None,
    end: datetime | None,
    created_by: str,
) -> DriftCheck:
    """Queue a check of ``check_target``; a request, unlike a scheduled tick, always gets its own row."""
    target = await asyncio.to_thread(check_target, db, settings, engine, reference, start, end)
    row = await checks.submit(target.model, target.reference_id, target.window, created_by)
    assert row is not None
    return row
