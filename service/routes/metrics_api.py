"""Stateless scoring of a caller's own predictions: parse, delegate to ``metrics``, return.

Bodies are length- and text-checked before parsing (``BoundedJSONRoute``); every computation runs
under the concurrency cap and the deadline (``run_metric``), within the operator's limits.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from metrics.classification import classification_report
from metrics.generation import generation_report
from metrics.significance import compare_classification, compare_generation
from service.deps import EvaluatorDep, SettingsDep
from service.metrics_limits import run_metric
from service.request_guard import BoundedJSONRoute
from service.schemas.jsonable import to_jsonable
from service.schemas.metrics import (
    ClassificationCompareRequest,
    ClassificationRequest,
    ClassificationResponse,
    CompareResponse,
    GenerationCompareRequest,
    GenerationRequest,
    GenerationResponse,
)
from service.settings import Settings

router = APIRouter(prefix="/v1/metrics", tags=["metrics"], route_class=BoundedJSONRoute)

CompareBody = Annotated[GenerationCompareRequest | ClassificationCompareRequest, Body(discriminator="task")]


def _limits(settings: Settings, *, text: bool) -> dict[str, Any]:
    """The operator's bounds, which a request cannot raise: resamples always, segments and workers for text."""
    limits: dict[str, Any] = {"max_resamples": settings.max_resamples}
    if text:
        limits |= {"max_segments": settings.max_segments, "workers": settings.metric_workers}
    return limits


@router.post("/classification", response_model=ClassificationResponse)
async def classification(_: EvaluatorDep, settings: SettingsDep, body: ClassificationRequest, request: Request) -> Any:
    report = await run_metric(request, classification_report, **body.arguments(), **_limits(settings, text=False))
    return to_jsonable(report)


@router.post("/generation", response_model=GenerationResponse)
async def generation(_: EvaluatorDep, settings: SettingsDep, body: GenerationRequest, request: Request) -> Any:
    scores = await run_metric(request, generation_report, **body.arguments(), **_limits(settings, text=True))
    return {"scores": to_jsonable(scores), "warnings": [w for score in scores.values() for w in score.warnings or []]}


@router.post("/compare", response_model=CompareResponse)
async def compare(_: EvaluatorDep, settings: SettingsDep, body: CompareBody, request: Request) -> Any:
    text = isinstance(body, GenerationCompareRequest)
    compute = compare_generation if text else compare_classification
    results = await run_metric(request, compute, **body.arguments(), **_limits(settings, text=text))
    return {"results": to_jsonable(results)}
