"""Stateless scoring of a caller's own predictions: parse, delegate to ``metrics``, return.

Bodies are length- and text-checked before parsing (``BoundedJSONRoute``); every computation runs
under the concurrency cap and the deadline (``run_metric``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from metrics.classification import classification_report
from metrics.generation import generation_report
from metrics.significance import compare_classification, compare_generation
from service.auth import Role, require
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

router = APIRouter(
    prefix="/v1/metrics",
    tags=["metrics"],
    dependencies=[Depends(require(Role.evaluator))],
    route_class=BoundedJSONRoute,
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post("/classification", response_model=ClassificationResponse)
async def classification(body: ClassificationRequest, request: Request) -> Any:
    settings = _settings(request)
    report = await run_metric(
        request,
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
    return to_jsonable(report)


@router.post("/generation", response_model=GenerationResponse)
async def generation(body: GenerationRequest, request: Request) -> Any:
    settings = _settings(request)
    scores = await run_metric(
        request,
        generation_report,
        body.hypotheses,
        body.references,
        metrics=body.metrics,
        tokenize=body.tokenize,
        lowercase=body.lowercase,
        chrf_word_order=body.chrf_word_order,
        sentence_level=body.sentence_level,
        confidence_level=body.confidence_level,
        n_resamples=body.n_resamples,
        seed=body.seed,
        workers=settings.metric_workers,
        max_segments=settings.max_segments,
        max_resamples=settings.max_resamples,
    )
    return {"scores": to_jsonable(scores)}


CompareBody = Annotated[GenerationCompareRequest | ClassificationCompareRequest, Body(discriminator="task")]


@router.post("/compare", response_model=CompareResponse)
async def compare(body: CompareBody, request: Request) -> Any:
    settings = _settings(request)
    common: dict[str, Any] = {
        "metrics": body.metrics,
        "test": body.test,
        "n_resamples": body.n_resamples,
        "seed": body.seed,
        "confidence_level": body.confidence_level,
        "max_resamples": settings.max_resamples,
    }
    if isinstance(body, GenerationCompareRequest):
        results = await run_metric(
            request,
            lambda: compare_generation(
                body.references,
                body.baseline,
                body.candidate,
                tokenize=body.tokenize,
                lowercase=body.lowercase,
                chrf_word_order=body.chrf_word_order,
                workers=settings.metric_workers,
                max_segments=settings.max_segments,
                **common,
            ),
        )
    else:
        results = await run_metric(
            request,
            lambda: compare_classification(
                body.references,
                body.baseline,
                body.candidate,
                average=body.average,
                labels=body.labels,
                pos_label=body.pos_label,
                zero_division=body.zero_division,
                **common,
            ),
        )
    return {"results": to_jsonable(results)}
