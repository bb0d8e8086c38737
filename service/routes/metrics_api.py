"""Stateless scoring of a caller's own predictions: parse, delegate to ``metrics``, return."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool

from metrics.classification import classification_report
from metrics.errors import MetricInputError
from metrics.generation import generation_report
from metrics.significance import compare_classification, compare_generation
from service.auth import Role, require
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
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _check_size(settings: Settings, n: int, field: str) -> None:
    if n > settings.max_segments:
        raise MetricInputError(f"{n} items exceed HELDOUT_MAX_SEGMENTS ({settings.max_segments})", field)


@router.post("/classification", response_model=ClassificationResponse)
async def classification(body: ClassificationRequest, request: Request) -> Any:
    settings = _settings(request)
    _check_size(settings, len(body.predictions), "predictions")
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
    return to_jsonable(report)


@router.post("/generation", response_model=GenerationResponse)
async def generation(body: GenerationRequest, request: Request) -> Any:
    settings = _settings(request)
    scores = await run_in_threadpool(
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
    _check_size(settings, len(body.references), "references")
    common: dict[str, Any] = {
        "metrics": body.metrics,
        "test": body.test,
        "n_resamples": body.n_resamples,
        "seed": body.seed,
        "confidence_level": body.confidence_level,
        "max_resamples": settings.max_resamples,
    }
    if isinstance(body, GenerationCompareRequest):
        results = await run_in_threadpool(
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
            )
        )
    else:
        results = await run_in_threadpool(
            lambda: compare_classification(
                body.references,
                body.baseline,
                body.candidate,
                average=body.average,
                labels=body.labels,
                pos_label=body.pos_label,
                zero_division=body.zero_division,
                **common,
            )
        )
    return {"results": to_jsonable(results)}
