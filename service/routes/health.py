"""Liveness, readiness and the Prometheus exposition."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from monitors.exposition import CONTENT_TYPE, render_latest
from service.errors import PROBLEM_JSON
from service.readiness import Readiness
from service.schemas.health import Health
from service.schemas.health import Readiness as ReadinessBody

router = APIRouter(tags=["health"])


async def _readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.readiness
    return readiness


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessBody,
    responses={503: {"description": "a check failed", "content": {PROBLEM_JSON: {}}}},
)
async def readyz(readiness: Annotated[Readiness, Depends(_readiness)]) -> ReadinessBody:
    return ReadinessBody(status="ready", checks=await run_in_threadpool(readiness.verify))


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics() -> Response:
    return Response(await run_in_threadpool(render_latest), media_type=CONTENT_TYPE)
