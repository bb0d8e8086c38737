"""The one error format: RFC 9457 ``application/problem+json`` for every 4xx and 5xx.

Handlers here are the only place errors become responses, so no stack trace can reach a client. Every
problem also carries OpenAI's ``error`` member (``message``, ``type``, ``code``, ``param``), so OpenAI SDKs
and tools built on them (lm-eval, LangChain) show the detail instead of a bare status.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from metrics.errors import MetricInputError
from service.domain_errors import Busy, Conflict, DomainError, Invalid, NotFound, TimedOut, Unavailable

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("heldout.errors")

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# OpenAI's error types; statuses it has no word for answer by their class.
OPENAI_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def openai_error(status: int, detail: str, errors: list[dict[str, Any]] | None) -> dict[str, Any]:
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = TITLES.get(status, "error").lower().replace(" ", "_")
    return {"message": detail, "type": kind, "code": code, "param": errors[0]["field"] if errors else None}


class ProblemError(Exception):
    """Raise anywhere in the service to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://heldout.dev/problems/{status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body["error"] = openai_error(status, detail, errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field_name(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem_response(422, detail, errors=errors)


async def _metric_input_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MetricInputError)
    field = exc.field or "body"
    return problem_response(422, f"{field}: {exc.message}", errors=[{"field": field, "message": exc.message}])


# Most specific first: the first base class a domain error is an instance of gives its status.
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (Busy, 429),
    (Unavailable, 503),
    (TimedOut, 504),
)


def domain_problem(exc: DomainError) -> ProblemError:
    """The one map from a domain refusal to its HTTP answer: status, detail, field, Retry-After."""
    status = next((code for kind, code in DOMAIN_STATUS if isinstance(exc, kind)), 500)
    errors = [{"field": p.field, "message": p.message} for p in exc.field_problems()] or None
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ProblemError(status, exc.detail, errors=errors, headers=headers)


async def _domain_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    problem = domain_problem(exc)
    return problem_response(problem.status, problem.detail, errors=problem.errors, headers=problem.headers)


async def _problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)


async def _http_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
    return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


def unhandled_response(method: str, path: str, exc: Exception) -> JSONResponse:
    """The 500 for a bug: the details go to the log, never to the client."""
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return problem_response(500, "internal error; the server log has the details")


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    return unhandled_response(request.method, request.url.path, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(MetricInputError, _metric_input_handler)
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(DomainError, _domain_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
