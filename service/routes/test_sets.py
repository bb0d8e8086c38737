"""Blind test sets: upload (admin), metadata and inputs (reader), scoring (evaluator), deletion (admin).

The upload parses its multipart body itself (``service.upload_form``), after the auth dependency has
passed, so an unauthenticated client cannot make the server spool a file to disk.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.auth import Role
from service.deps import AdminDep, DbDep, EvaluatorDep, ReaderDep, SettingsDep
from service.evaluations.agreement import test_set_agreement
from service.request_guard import reject_lone_surrogates
from service.schemas.evaluations import AgreementReport
from service.schemas.jsonable import to_jsonable
from service.schemas.problem import problem_responses
from service.schemas.test_sets import (
    InputsPage,
    ScoreRequest,
    ScoreResponse,
    TestSetInfo,
    TestSetList,
    upload_openapi,
)
from service.test_sets import store, submissions
from service.upload_form import upload_from
from service.views.test_sets import inputs_page, score_response, test_set_info

router = APIRouter(prefix="/v1/test-sets", tags=["test sets"])
NOT_FOUND = problem_responses(404, 422)
# Ids, offsets and cursors fit the databases' 32-bit integers.
MAX_INT = 2**31 - 1
TestSetId = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.post(
    "",
    status_code=201,
    response_model=TestSetInfo,
    openapi_extra=upload_openapi(),
    responses={**problem_responses(400)},
    summary="Upload a test set (multipart: file, name, task, options)",
)
async def upload(request: Request, principal: AdminDep, db: DbDep, settings: SettingsDep) -> Any:
    async with upload_from(request, settings.data_dir, principal.key_id, settings.training_sample) as upload:
        row = await run_in_threadpool(store.create_test_set, db, upload, settings.max_record_bytes)
    return test_set_info(row)


@router.get("", response_model=TestSetList)
async def list_sets(
    _: ReaderDep,
    db: DbDep,
    name: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Any:
    rows, total = await run_in_threadpool(store.list_test_sets, db, name, limit, offset)
    return {"items": [test_set_info(row) for row in rows], "total": total}


@router.get("/{test_set_id}", response_model=TestSetInfo, responses=NOT_FOUND)
async def get_set(_: ReaderDep, db: DbDep, test_set_id: TestSetId) -> Any:
    return test_set_info(await run_in_threadpool(store.read_test_set, db, test_set_id))


@router.get(
    "/{test_set_id}/inputs",
    response_model=InputsPage,
    responses={**NOT_FOUND, **problem_responses(422)},
    summary="Ids and inputs (texts or sources) of a test set, in order, without labels",
)
async def inputs(
    _: ReaderDep,
    db: DbDep,
    test_set_id: TestSetId,
    cursor: Annotated[int, Query(ge=0, le=MAX_INT, description="Position to start from: 0, then next_cursor.")] = 0,
    limit: Annotated[
        int,
        Query(ge=1, le=10_000, description="Records at most; a page also ends once it holds 8 MiB of ids and inputs."),
    ] = 1000,
) -> Any:
    return inputs_page(await run_in_threadpool(store.list_inputs, db, test_set_id, cursor, limit))


@router.post(
    "/{test_set_id}/scores",
    response_model=ScoreResponse,
    responses={**NOT_FOUND, **problem_responses(429)},
    summary="Score predictions against the hidden labels; only aggregates come back",
)
async def score(
    request: Request,
    test_set_id: TestSetId,
    body: ScoreRequest,
    principal: EvaluatorDep,
    db: DbDep,
    settings: SettingsDep,
) -> Any:
    reject_lone_surrogates(await request.body(), {"predictions": body.predictions})
    full_report = principal.role >= Role.admin
    outcome = await run_in_threadpool(
        submissions.submit, db, settings, test_set_id, principal.key_id, body.predictions, full_report
    )
    return score_response(outcome)


@router.get(
    "/{test_set_id}/agreement",
    response_model=AgreementReport,
    responses={**NOT_FOUND, **problem_responses(409)},
    summary="System-level Kendall tau and Pearson r between each metric and human ratings, over rated evaluations",
)
async def agreement(_: EvaluatorDep, db: DbDep, settings: SettingsDep, test_set_id: TestSetId) -> Any:
    return to_jsonable(await run_in_threadpool(test_set_agreement, db, settings, test_set_id))


@router.delete("/{test_set_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def delete_set(_: AdminDep, db: DbDep, test_set_id: TestSetId) -> Response:
    await run_in_threadpool(store.delete_test_set, db, test_set_id)
    return Response(status_code=204)
