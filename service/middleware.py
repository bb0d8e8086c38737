"""Pure-ASGI middleware: request body cap and HTTP Prometheus metrics.

Pure ASGI rather than BaseHTTPMiddleware so streaming bodies are counted as they arrive and no
extra task is spawned per request.
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitors.instruments import http_request_duration_seconds, http_requests_total
from service.errors import problem_response

UNMATCHED_ROUTE = "<unmatched>"
# Where a path answered outside FastAPI's router (the /v1/predict fast path) names the route it stands for.
ROUTE_TEMPLATE = "heldout.route_template"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodySizeLimit:
    """Caps request bodies; upload paths (streamed to disk, never held in memory) get their own cap."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int, upload_paths: frozenset[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = scope.get("method") == "POST" and scope.get("path", "").rstrip("/") in self.upload_paths
        limit, setting = (
            (self.upload_bytes, "HELDOUT_MAX_UPLOAD_BYTES") if is_upload else (self.max_bytes, "HELDOUT_MAX_BODY_BYTES")
        )
        detail = f"request body is larger than {setting} ({limit} bytes)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await problem_response(413, detail)(scope, receive, send)
            return
        seen = 0
        rejected = False
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 has been sent; whatever the app answers after the cut is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def counting_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not rejected:
                if not started:
                    await problem_response(413, detail)(scope, receive, send)
                rejected = True
            if rejected:
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, guarded_send)


class HttpMetrics:
    """Counts and times every request by route template, so label cardinality stays bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            template = scope.get(ROUTE_TEMPLATE) or getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "GET") if scope.get("method") in KNOWN_METHODS else "OTHER"
            http_requests_total.labels(method, template, str(status)).inc()
            http_request_duration_seconds.labels(method, template).observe(time.perf_counter() - start)
