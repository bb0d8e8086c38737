"""Pure-ASGI middleware: request body cap and HTTP Prometheus metrics.

Pure ASGI rather than BaseHTTPMiddleware so streaming bodies are counted as they arrive and no
extra task is spawned per request.
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitors.instruments import http_request_duration_seconds, http_requests_total
from service.errors import problem_response

UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem_response(413, self._detail())(scope, receive, send)
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
            if seen > self.max_bytes and not rejected:
                if not started:
                    await problem_response(413, self._detail())(scope, receive, send)
                rejected = True
            if rejected:
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, guarded_send)

    def _detail(self) -> str:
        return f"request body is larger than HELDOUT_MAX_BODY_BYTES ({self.max_bytes} bytes)"


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
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "GET") if scope.get("method") in KNOWN_METHODS else "OTHER"
            http_requests_total.labels(method, template, str(status)).inc()
            http_request_duration_seconds.labels(method, template).observe(time.perf_counter() - start)
