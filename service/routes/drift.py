"""Drift references, checks and reports: parse, hand to ``service.monitoring``, return.

A check request only stores a queued row and returns 202; Evidently runs later, in the drift worker.
"""

import gzip
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.deps import DbDep, EvaluatorDep, OptionalEngineDep, ReaderDep, SettingsDep
from service.monitoring.checks import DriftChecks, check_report, get_check, list_checks
from service.monitoring.drift_requests import build_reference, request_check
from service.monitoring.references import list_references, read_reference
from service.monitoring.startup import Monitoring
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
from service.views.drift import check_info, reference_info

router = APIRouter(prefix="/v1/drift", tags=["drift"])
NOT_FOUND = problem_responses(404)
Limit = Annotated[int, Query(ge=1, le=500)]
# Ids and offsets are database integers: anything beyond 32 bits can only be a miss, never a row.
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ModelFilter = Annotated[str | None, Query(max_length=200)]
# A report embeds logged user texts: it runs as an opaque origin, with no access to this service's origin,
# and is never sniffed as anything but HTML.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff"}


async def _checks(request: Request) -> DriftChecks:
    monitoring: Monitoring = request.app.state.monitoring
    return monitoring.checks


ChecksDep = Annotated[DriftChecks, Depends(_checks)]


@router.post("/reference", status_code=201, response_model=ReferenceInfo, responses={**problem_responses(404, 409)})
async def create_reference(
    body: ReferenceRequest, principal: EvaluatorDep, db: DbDep, settings: SettingsDep, engine: OptionalEngineDep
) -> ReferenceInfo:
    row = await build_reference(
        db,
        settings,
        engine,
        test_set=body.test_set,
        model=body.model,
        start=body.start,
        end=body.end,
        created_by=principal.key_id,
    )
    return reference_info(row)


@router.get("/reference", response_model=ReferenceList)
async def references(
    _: ReaderDep, db: DbDep, model: ModelFilter = None, limit: Limit = 50, offset: Offset = 0
) -> ReferenceList:
    rows, total = await run_in_threadpool(list_references, db, model, limit, offset)
    return ReferenceList(items=[reference_info(r) for r in rows], total=total)


@router.get("/reference/{reference_id}", response_model=ReferenceInfo, responses=NOT_FOUND)
async def reference(_: ReaderDep, db: DbDep, reference_id: RowId) -> ReferenceInfo:
    return reference_info(await run_in_threadpool(read_reference, db, reference_id))


@router.post("/checks", status_code=202, response_model=CheckInfo, responses={**problem_responses(404, 409, 429)})
async def create_check(
    response: Response,
    principal: EvaluatorDep,
    db: DbDep,
    settings: SettingsDep,
    engine: OptionalEngineDep,
    queue: ChecksDep,
    body: Annotated[CheckRequest | None, Body()] = None,
) -> CheckInfo:
    body = body or CheckRequest()
    row = await request_check(
        db,
        settings,
        queue,
        engine,
        reference=body.reference,
        start=body.start,
        end=body.end,
        created_by=principal.key_id,
    )
    response.headers["Location"] = f"/v1/drift/checks/{row.id}"
    return check_info(row)


@router.get("/checks", response_model=CheckList)
async def checks(
    _: ReaderDep,
    db: DbDep,
    model: ModelFilter = None,
    status: CheckStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CheckList:
    rows, total = await run_in_threadpool(list_checks, db, model, status, limit, offset)
    return CheckList(items=[check_info(r) for r in rows], total=total)


@router.get("/checks/{check_id}", response_model=CheckInfo, responses=NOT_FOUND)
async def check(_: ReaderDep, db: DbDep, check_id: RowId) -> CheckInfo:
    return check_info(await run_in_threadpool(get_check, db, check_id))


@router.get(
    "/checks/{check_id}/report",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}, **problem_responses(404, 409)},
)
async def report(request: Request, _: ReaderDep, db: DbDep, check_id: RowId) -> Response:
    compressed = await run_in_threadpool(check_report, db, check_id)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(compressed, media_type="text/html", headers={**REPORT_HEADERS, "Content-Encoding": "gzip"})
    html = await run_in_threadpool(gzip.decompress, compressed)
    return Response(html, media_type="text/html", headers=REPORT_HEADERS)
