"""Evaluation jobs of the served model over a stored test set: create (evaluator), read and list (reader)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from service.auth import Principal, Role, require
from service.db.session import Database
from service.evaluations import job_store, operations
from service.evaluations.evaluation_worker import EvaluationWorker
from service.schemas.evaluations import (
    CompareRequest,
    EvaluationCompare,
    EvaluationCreated,
    EvaluationInfo,
    EvaluationList,
    EvaluationRequest,
    Status,
)
from service.schemas.jsonable import to_jsonable
from service.schemas.problem import problem_responses
from service.settings import Settings

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])
MAX_INT = 2**31 - 1
EvaluationId = Annotated[int, Path(ge=1, le=MAX_INT)]


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _served_model(request: Request) -> job_store.ModelIdentity | None:
    engine = getattr(request.app.state, "inference", None)
    if engine is None:
        return None
    loaded = engine.loaded
    return job_store.ModelIdentity(loaded.name, loaded.version, loaded.task.task, loaded.task.multilabel)


@router.post(
    "",
    status_code=202,
    response_model=EvaluationCreated,
    responses={**problem_responses(404, 409)},
    summary="Run the served model over a test set as a tracked, resumable job",
)
async def create(
    request: Request, body: EvaluationRequest, principal: Annotated[Principal, Depends(require(Role.evaluator))]
) -> Any:
    job = await run_in_threadpool(
        lambda: operations.create(
            _db(request),
            _settings(request),
            _served_model(request),
            test_set=body.test_set,
            metrics=body.metrics,
            extra_metrics=body.extra_metrics,
            max_new_tokens=body.max_new_tokens,
            created_by=principal.key_id,
        )
    )
    worker: EvaluationWorker | None = getattr(request.app.state, "evaluations", None)
    if worker is not None:
        worker.wake()
    return {"id": job.id, "status": job.status}


@router.get("", response_model=EvaluationList, dependencies=[Depends(require(Role.reader))])
async def list_evaluations(
    request: Request,
    status: Status | None = None,
    test_set: Annotated[int | None, Query(ge=1, le=MAX_INT, description="A test set id.")] = None,
    test_set_name: Annotated[str | None, Query(max_length=100)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Any:
    filters = {
        "status": status,
        "test_set_id": test_set,
        "test_set_name": test_set_name,
        "model": model,
        "model_version": model_version,
    }
    rows, total = await run_in_threadpool(job_store.list_jobs, _db(request), filters, limit, offset)
    return {"items": [to_jsonable(operations.info(row)) for row in rows], "total": total}


@router.get(
    "/{evaluation_id}",
    response_model=EvaluationInfo,
    dependencies=[Depends(require(Role.reader))],
    responses=problem_responses(404, 422),
)
async def get_evaluation(request: Request, evaluation_id: EvaluationId) -> Any:
    return to_jsonable(operations.info(await run_in_threadpool(job_store.get, _db(request), evaluation_id)))


@router.post(
    "/compare",
    response_model=EvaluationCompare,
    dependencies=[Depends(require(Role.evaluator))],
    responses={**problem_responses(404, 409)},
    summary="Paired significance test per metric between two finished evaluations on the same test set",
)
async def compare(request: Request, body: CompareRequest) -> Any:
    result = await run_in_threadpool(
        lambda: operations.compare_jobs(
            _db(request),
            _settings(request),
            body.baseline,
            body.candidate,
            test=body.test,
            n_resamples=body.n_resamples,
            seed=body.seed,
        )
    )
    return to_jsonable(result)
