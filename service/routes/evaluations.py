"""Evaluation jobs of the served model over a stored test set: create (evaluator), read and list (reader);
a generation evaluation's outputs and their human ratings (evaluator)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.deps import DbDep, EvaluatorDep, OptionalEngineDep, ReaderDep, SettingsDep
from service.evaluations import job_store, operations, ratings
from service.evaluations.evaluation_worker import EvaluationWorker
from service.schemas.evaluations import (
    CompareRequest,
    EvaluationCompare,
    EvaluationCreated,
    EvaluationInfo,
    EvaluationList,
    EvaluationRequest,
    OutputsPage,
    RatingsRequest,
    RatingsStored,
    Status,
)
from service.schemas.jsonable import to_jsonable
from service.schemas.problem import problem_responses
from service.views.evaluations import outputs_page
from service.views.reliability_svg import reliability_svg

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])
MAX_INT = 2**31 - 1
EvaluationId = Annotated[int, Path(ge=1, le=MAX_INT)]


async def _worker(request: Request) -> EvaluationWorker | None:
    """This replica's evaluation worker; None where no model is served or HELDOUT_EVALUATION_WORKER is off."""
    worker: EvaluationWorker | None = request.app.state.evaluations
    return worker


WorkerDep = Annotated[EvaluationWorker | None, Depends(_worker)]


@router.post(
    "",
    status_code=202,
    response_model=EvaluationCreated,
    responses={**problem_responses(404, 409)},
    summary="Run the served model over a test set as a tracked, resumable job",
)
async def create(
    body: EvaluationRequest,
    principal: EvaluatorDep,
    db: DbDep,
    settings: SettingsDep,
    engine: OptionalEngineDep,
    worker: WorkerDep,
) -> Any:
    job = await run_in_threadpool(
        lambda: operations.create(
            db,
            settings,
            engine,
            test_set=body.test_set,
            metrics=body.metrics,
            extra_metrics=body.extra_metrics,
            max_new_tokens=body.max_new_tokens,
            chat=body.chat,
            system=body.system,
            generalization_gap=body.generalization_gap,
            created_by=principal.key_id,
        )
    )
    if worker is not None:
        worker.wake()
    return {"id": job.id, "status": job.status}


@router.get("", response_model=EvaluationList)
async def list_evaluations(
    _: ReaderDep,
    db: DbDep,
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
    rows, total = await run_in_threadpool(job_store.list_jobs, db, filters, limit, offset)
    return {"items": [to_jsonable(operations.info(row)) for row in rows], "total": total}


@router.get("/{evaluation_id}", response_model=EvaluationInfo, responses=problem_responses(404, 422))
async def get_evaluation(_: ReaderDep, db: DbDep, evaluation_id: EvaluationId) -> Any:
    return to_jsonable(operations.info(await run_in_threadpool(job_store.get, db, evaluation_id)))


@router.get(
    "/{evaluation_id}/calibration.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **problem_responses(404, 409, 422)},
    summary="The reliability diagram of a classifier evaluation's probabilities, as a self-contained SVG",
)
async def calibration_svg(_: ReaderDep, db: DbDep, evaluation_id: EvaluationId) -> Response:
    found, title = await run_in_threadpool(operations.calibration, db, evaluation_id)
    return Response(reliability_svg(found, title), media_type="image/svg+xml")


@router.post(
    "/compare",
    response_model=EvaluationCompare,
    responses={**problem_responses(404, 409)},
    summary="Paired significance test per metric between two finished evaluations on the same test set",
)
async def compare(_: EvaluatorDep, db: DbDep, settings: SettingsDep, body: CompareRequest) -> Any:
    result = await run_in_threadpool(
        lambda: operations.compare_jobs(
            db, settings, body.baseline, body.candidate, test=body.test, n_resamples=body.n_resamples, seed=body.seed
        )
    )
    return to_jsonable(result)


@router.get(
    "/{evaluation_id}/outputs",
    response_model=OutputsPage,
    responses=problem_responses(404, 409, 422),
    summary="A succeeded generation evaluation's sources and outputs, for raters; never its references",
)
async def outputs(
    _: EvaluatorDep,
    db: DbDep,
    evaluation_id: EvaluationId,
    cursor: Annotated[int, Query(ge=0, le=MAX_INT, description="Position to start from: 0, then next_cursor.")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="Records at most; a page also ends once it holds 8 MiB.")
    ] = 100,
) -> Any:
    return outputs_page(await run_in_threadpool(ratings.outputs_page, db, evaluation_id, cursor, limit))


@router.post(
    "/{evaluation_id}/ratings",
    response_model=RatingsStored,
    responses=problem_responses(404, 409, 422),
    summary="Human ratings of a generation evaluation's outputs, on the test set's rating scale",
)
async def rate(
    principal: EvaluatorDep, db: DbDep, settings: SettingsDep, evaluation_id: EvaluationId, body: RatingsRequest
) -> Any:
    items = [ratings.Rating(item.id, item.rater, float(item.rating)) for item in body.items]
    n_resamples = min(settings.scoring_resamples, settings.max_resamples)
    job = await run_in_threadpool(
        lambda: ratings.rate(db, evaluation_id, items, created_by=principal.key_id, n_resamples=n_resamples)
    )
    return {"evaluation": job.id, "received": len(items), "human": job.human}
