"""Stateless scoring of a caller's own predictions: parse, delegate to ``metrics``, return."""

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from metrics.classification import classification_report
from metrics.errors import MetricInputError
from service.auth import Role, require
from service.schemas.jsonable import to_jsonable
from service.schemas.metrics import ClassificationRequest, ClassificationResponse
from service.schemas.problem import AUTH_ERRORS, BODY_ERRORS
from service.settings import Settings

router = APIRouter(
    prefix="/v1/metrics",
    tags=["metrics"],
    dependencies=[Depends(require(Role.evaluator))],
    responses={**AUTH_ERRORS, **BODY_ERRORS},
)


def _check_size(settings: Settings, n: int) -> None:
    if n > settings.max_segments:
        raise MetricInputError(f"{n} items exceed HELDOUT_MAX_SEGMENTS ({settings.max_segments})", "predictions")


@router.post("/classification", response_model=ClassificationResponse)
async def classification(body: ClassificationRequest, request: Request) -> ClassificationResponse:
    settings: Settings = request.app.state.settings
    _check_size(settings, len(body.predictions))
    report = await run_in_threadpool(
        classification_report,
        body.predictions,
        body.references,
        average=body.average,
        labels=body.labels,
        pos_label=body.pos_label,
        zero_division=body.zero_division,
        confidence_level=body.confidence_level,
        n_resamples=body.n_resamples,
        seed=body.seed,
        max_resamples=settings.max_resamples,
    )
    return ClassificationResponse.model_validate(to_jsonable(report))
