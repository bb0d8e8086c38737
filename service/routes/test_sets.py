"""Blind test sets: upload (admin), metadata and inputs (reader), scoring (evaluator), deletion (admin).

The upload parses its multipart body itself, after the auth dependency has passed, so an
unauthenticated client cannot make the server spool a file to disk; files spool to the data dir.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from service.auth import Principal, Role, require
from service.db.models import TestSet
from service.db.session import Database
from service.errors import ProblemError
from service.request_guard import reject_lone_surrogates
from service.schemas.jsonable import to_jsonable
from service.schemas.problem import problem_responses
from service.schemas.test_sets import (
    FILE_FIELDS,
    InputsPage,
    ScoreRequest,
    ScoreResponse,
    TestSetInfo,
    TestSetList,
    UploadForm,
    upload_openapi,
)
from service.settings import Settings
from service.tasks import Task
from service.test_sets import store, submissions
from service.test_sets.config import ConfigForm
from service.test_sets.records import Format, UploadError
from service.test_sets.spool import read_form
from service.test_sets.training import TrainingSource

router = APIRouter(prefix="/v1/test-sets", tags=["test sets"])
NOT_FOUND = problem_responses(404, 422)
# Ids, offsets and cursors fit the databases' 32-bit integers.
MAX_INT = 2**31 - 1
TestSetId = Annotated[int, Path(ge=1, le=MAX_INT)]
# Multipart limits: three files at most, small text fields.
MAX_FORM_FIELDS = 20
MAX_FIELD_BYTES = 64 * 1024


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def info(row: TestSet) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "task": row.task,
        "sha256": row.sha256,
        "size": row.size,
        "labels": row.labels,
        "multilabel": row.multilabel,
        "settings": row.settings,
        "audit": row.audit,
        "created_at": row.created_at,
    }


def _upload_error(exc: UploadError) -> ProblemError:
    messages = exc.messages()
    shown = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
    return ProblemError(
        422, f"{exc.field}: {shown}", errors=[{"field": exc.field, "message": message} for message in messages]
    )


async def _read_form(request: Request) -> tuple[UploadForm, dict[str, UploadFile], Any]:
    try:
        form = await read_form(
            request,
            _settings(request).data_dir,
            max_files=len(FILE_FIELDS),
            max_fields=MAX_FORM_FIELDS,
            max_part_size=MAX_FIELD_BYTES,
        )
    except ClientDisconnect:
        raise ProblemError(400, "the upload was cut off before its end") from None
    files = {key: value for key, value in form.items() if isinstance(value, UploadFile)}
    fields = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    errors: list[dict[str, Any]] = []
    for key in files.keys() - set(FILE_FIELDS):
        errors.append({"type": "value_error", "loc": ("body", key), "msg": "unexpected file field"})
    for key in set(FILE_FIELDS) & fields.keys():
        errors.append({"type": "value_error", "loc": ("body", key), "msg": "must be a file"})
    if "file" not in files and "file" not in fields:
        errors.append({"type": "missing", "loc": ("body", "file"), "msg": "Field required"})
    try:
        parsed = UploadForm.model_validate({k: v for k, v in fields.items() if k not in FILE_FIELDS})
    except ValidationError as exc:
        errors.extend({"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in exc.errors())
    if errors:
        await form.close()
        raise RequestValidationError(errors)
    return parsed, files, form


@router.post(
    "",
    status_code=201,
    response_model=TestSetInfo,
    openapi_extra=upload_openapi(),
    responses={**problem_responses(400)},
    summary="Upload a test set (multipart: file, name, task, options)",
)
async def upload(request: Request, principal: Annotated[Principal, Depends(require(Role.admin))]) -> Any:
    form, files, raw = await _read_form(request)
    try:
        upload = store.Upload(
            name=form.name,
            task=Task(form.task),
            filename=files["file"].filename,
            stream=files["file"].file,
            fmt=Format(form.format) if form.format else None,
            config=ConfigForm(
                average=form.average,
                pos_label=form.pos_label,
                daily_budget=form.daily_budget,
                ladder=form.ladder,
                ladder_metric=form.ladder_metric,
                ladder_step=form.ladder_step,
                ladder_alpha=form.ladder_alpha,
            ),
            training=[
                TrainingSource(key, files[key].filename, files[key].file)
                for key in ("training_file", "training_fingerprints")
                if key in files
            ],
            created_by=principal.key_id,
        )
        row = await run_in_threadpool(store.create_test_set, _db(request), upload, _settings(request).max_record_bytes)
    except UploadError as exc:
        raise _upload_error(exc) from None
    finally:
        await raw.close()
    return info(row)


@router.get("", response_model=TestSetList, dependencies=[Depends(require(Role.reader))])
async def list_sets(
    request: Request,
    name: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Any:
    rows, total = await run_in_threadpool(store.list_test_sets, _db(request), name, limit, offset)
    return {"items": [info(row) for row in rows], "total": total}


@router.get(
    "/{test_set_id}", response_model=TestSetInfo, dependencies=[Depends(require(Role.reader))], responses=NOT_FOUND
)
async def get_set(request: Request, test_set_id: TestSetId) -> Any:
    return info(await run_in_threadpool(store.read_test_set, _db(request), test_set_id))


@router.get(
    "/{test_set_id}/inputs",
    response_model=InputsPage,
    dependencies=[Depends(require(Role.reader))],
    responses={**NOT_FOUND, **problem_responses(422)},
    summary="Ids and inputs (texts or sources) of a test set, in order, without labels",
)
async def inputs(
    request: Request,
    test_set_id: TestSetId,
    cursor: Annotated[int, Query(ge=0, le=MAX_INT, description="Position to start from: 0, then next_cursor.")] = 0,
    limit: Annotated[
        int,
        Query(ge=1, le=10_000, description="Records at most; a page also ends once it holds 8 MiB of ids and inputs."),
    ] = 1000,
) -> Any:
    row = await run_in_threadpool(store.read_test_set, _db(request), test_set_id)
    items, next_cursor = await run_in_threadpool(store.list_inputs, _db(request), test_set_id, cursor, limit)
    return {"items": [{"id": i, "text": t} for i, t in items], "next_cursor": next_cursor, "total": row.size}


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
    principal: Annotated[Principal, Depends(require(Role.evaluator))],
) -> Any:
    settings = _settings(request)
    reject_lone_surrogates(await request.body(), {"predictions": body.predictions})
    outcome = await run_in_threadpool(
        submissions.submit,
        _db(request),
        test_set_id,
        principal.key_id,
        body.predictions,
        n_resamples=min(settings.scoring_resamples, settings.max_resamples),
        workers=settings.metric_workers,
        full_report=principal.role >= Role.admin,
    )
    row = outcome.test_set
    return {
        "test_set": {"id": row.id, "name": row.name, "version": row.version, "sha256": row.sha256},
        "mode": outcome.mode,
        "metrics": to_jsonable(outcome.metrics),
        "intervals": to_jsonable(outcome.intervals),
        "budget_remaining": outcome.budget_remaining,
    }


@router.delete(
    "/{test_set_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(require(Role.admin))],
    responses=NOT_FOUND,
)
async def delete_set(request: Request, test_set_id: TestSetId) -> Response:
    await run_in_threadpool(store.delete_test_set, _db(request), test_set_id)
    return Response(status_code=204)
