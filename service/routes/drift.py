"""Drift references, checks and reports: parse, hand to ``service.monitoring``, return.

A check request only stores a queued row and returns 202; Evidently runs later, in the drift worker.
"""

import gzip
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.auth import Principal, Role, require
from service.db.models import utcnow
from service.db.session import Database
from service.errors import ProblemError
from service.monitoring import reference_builder
from service.monitoring.checks import check_report, get_check, list_checks
from service.monitoring.references import get_reference, latest_reference, list_references
from service.monitoring.startup import Monitoring, served_model
from service.monitoring.times import as_utc
from service.monitoring.views import check_info, reference_info
from service.monitoring.window import Window, count_rows
from service.schemas.drift import (
    CheckInfo,
    CheckList,
    CheckRequest,
    CheckStatus,
    ReferenceInfo,
    ReferenceList,
    ReferenceRequest,
)
from service.schemas.problem import problem_responses
from service.settings import Settings

Evaluator = Annotated[Principal, Depends(require(Role.evaluator))]
router = APIRouter(prefix="/v1/drift", tags=["drift"])
READ = [Depends(require(Role.reader))]
NOT_FOUND = problem_responses(404)
Limit = Annotated[int, Query(ge=1, le=500)]
# Ids and offsets are database integers: anything beyond 32 bits can only be a miss, never a row.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ModelFilter = Annotated[str | None, Query(max_length=200)]
# A report embeds logged user texts: it runs as an opaque origin, with no access to this service's origin,
# and is never sniffed as anything but HTML.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff"}


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "/reference",
    status_code=201,
    response_model=ReferenceInfo,
    responses={**problem_responses(404, 409)},
)
async def create_reference(body: ReferenceRequest, request: Request, principal: Evaluator) -> ReferenceInfo:
    db, settings, engine = _db(request), _settings(request), served_model(request)
    if body.test_set is not None:
        row = await reference_builder.from_test_set(db, settings, engine, body.test_set, principal.key_id)
    else:
        assert body.start is not None and body.end is not None
        model = body.model or (engine.loaded.name if engine is not None else None)
        if model is None:
            raise ProblemError(422, "model: no model is served; name the model whose traffic to use")
        row = await reference_builder.from_window(db, settings, model, body.start, body.end, principal.key_id)
    return reference_info(row)


@router.get("/reference", response_model=ReferenceList, dependencies=READ)
async def references(
    request: Request, model: ModelFilter = None, limit: Limit = 50, offset: Offset = 0
) -> ReferenceList:
    def read() -> ReferenceList:
        with _db(request).session() as session:
            rows, total = list_references(session, model, limit, offset)
            return ReferenceList(items=[reference_info(r) for r in rows], total=total)

    return await run_in_threadpool(read)


@router.get("/reference/{reference_id}", response_model=ReferenceInfo, dependencies=READ, responses=NOT_FOUND)
async def reference(reference_id: RowId, request: Request) -> ReferenceInfo:
    def read() -> ReferenceInfo:
        with _db(request).session() as session:
            return reference_info(get_reference(session, reference_id))

    return await run_in_threadpool(read)


@router.post(
    "/checks",
    status_code=202,
    response_model=CheckInfo,
    responses={**problem_responses(404, 409, 429)},
)
async def create_check(
    request: Request,
    response: Response,
    principal: Evaluator,
    body: Annotated[CheckRequest | None, Body()] = None,
) -> CheckInfo:
    body = body or CheckRequest()
    db, settings, engine = _db(request), _settings(request), served_model(request)

    def resolve() -> tuple[str, int, Window]:
        with db.session() as session:
            if body.reference is not None:
                ref = get_reference(session, body.reference)
            else:
                latest = latest_reference(session, engine.loaded.name if engine is not None else None)
                if latest is None:
                    raise ProblemError(409, "no drift reference yet: POST /v1/drift/reference first")
                ref = latest
            end = as_utc(body.end) if body.end is not None else as_utc(utcnow())
            start = as_utc(body.start) if body.start is not None else end - settings.drift_window
            window = Window(ref.model, start, end)
            n = count_rows(session, window)
            if n < settings.drift_min_rows:
                raise ProblemError(
                    422,
                    f"the window from {start.isoformat()} to {end.isoformat()} has {n} logged predictions of "
                    f"{ref.model}; a check needs HELDOUT_DRIFT_MIN_ROWS ({settings.drift_min_rows})",
                )
            return ref.model, ref.id, window

    model, reference_id, window = await run_in_threadpool(resolve)
    monitoring: Monitoring = request.app.state.monitoring
    row = await monitoring.checks.submit(model, reference_id, window, principal.key_id)
    assert row is not None
    response.headers["Location"] = f"/v1/drift/checks/{row.id}"
    return check_info(row)


@router.get("/checks", response_model=CheckList, dependencies=READ)
async def checks(
    request: Request,
    model: ModelFilter = None,
    status: CheckStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CheckList:
    rows, total = await run_in_threadpool(list_checks, _db(request), model, status, limit, offset)
    return CheckList(items=[check_info(r) for r in rows], total=total)


@router.get("/checks/{check_id}", response_model=CheckInfo, dependencies=READ, responses=NOT_FOUND)
async def check(check_id: RowId, request: Request) -> CheckInfo:
    return check_info(await run_in_threadpool(get_check, _db(request), check_id))


@router.get(
    "/checks/{check_id}/report",
    response_class=Response,
    dependencies=READ,
    responses={200: {"content": {"text/html": {}}}, **problem_responses(404, 409)},
)
async def report(check_id: RowId, request: Request) -> Response:
    compressed = await run_in_threadpool(check_report, _db(request), check_id)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(compressed, media_type="text/html", headers={**REPORT_HEADERS, "Content-Encoding": "gzip"})
    html = await run_in_threadpool(gzip.decompress, compressed)
    return Response(html, media_type="text/html", headers=REPORT_HEADERS)
