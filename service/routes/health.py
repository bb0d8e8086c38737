from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from monitors.exposition import CONTENT_TYPE, render_latest
from service.errors import PROBLEM_JSON, problem_response
from service.readiness import Readiness
from service.schemas.health import Health
from service.schemas.health import Readiness as ReadinessBody

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessBody,
    responses={503: {"description": "a check failed", "content": {PROBLEM_JSON: {}}}},
)
async def readyz(request: Request) -> Response | ReadinessBody:
    readiness: Readiness = request.app.state.readiness
    checks = await run_in_threadpool(readiness.run)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        return problem_response(503, f"not ready: {', '.join(failed)} check failed")
    return ReadinessBody(status="ready", checks=checks)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics() -> Response:
    return Response(await run_in_threadpool(render_latest), media_type=CONTENT_TYPE)
