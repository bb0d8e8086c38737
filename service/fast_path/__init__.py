"""The serving routes answered straight from ASGI, past FastAPI's router, dependency solver and response
classes: /v1/predict, /v1/completions and /v1/chat/completions.

Under load on a CPU, the event loop's per-request cost competes with the model for the GIL, and most of
it was framework: routing, dependency solving, request wrappers (about half of the loop's time at 64
clients on /v1/predict). This middleware answers the common case itself: a JSON body that validates
against the route's own request model, from a key with the evaluator role, while a model is served.
Anything else (no key, a bad key, a body that does not validate, no model) goes on to the FastAPI route
unchanged, body replayed, so every validation error comes from the one place that produces them; the
engine's own refusals are answered through ``service.errors.domain_problem``, as the routes' handler
answers them. The routes stay declared for the OpenAPI contract and are what these paths must equal: each
pair answers through the same function of its route module.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import KeyStore, Role
from service.domain_errors import DomainError
from service.errors import domain_problem, problem_response, unhandled_response
from service.fast_path.completions import answer_chat, answer_completion
from service.fast_path.predict import answer_predict
from service.inference.engine import InferenceEngine
from service.middleware import ROUTE_TEMPLATE
from service.schemas.inference import PredictRequest
from service.schemas.openai import ChatCompletionRequest, CompletionRequest


@dataclass(frozen=True)
class FastRoute:
    """A route's request model, and what answers a request that validates against it: the engine's work,
    whose refusals raise, then the response that sends its result."""

    request: type[BaseModel]
    answer: Callable[[InferenceEngine, Any], Awaitable[ASGIApp]]


ROUTES = {
    "/v1/predict": FastRoute(PredictRequest, answer_predict),
    "/v1/completions": FastRoute(CompletionRequest, answer_completion),
    "/v1/chat/completions": FastRoute(ChatCompletionRequest, answer_chat),
}


def _bearer_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return key.strip() or None
    return None


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, or what arrived and the message that ended it early (a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        engine: InferenceEngine | None = state.inference
        headers = scope["headers"]
        key = _bearer_key(headers)
        store: KeyStore = state.keys
        principal = store.lookup(key) if key else None
        if engine is None or principal is None or principal.role < Role.evaluator or not _is_json(headers):
            await self.app(scope, receive, send)
            return
        body, ended = await _read_body(receive)
        try:
            request = None if ended else route.request.model_validate_json(body)
        except ValidationError:
            request = None
        if request is None:
            await self.app(scope, _replay(body, ended, receive), send)
            return
        scope[ROUTE_TEMPLATE] = scope["path"]
        try:
            respond = await route.answer(engine, request)
        except Exception as exc:  # before the first byte, so answered as the routes' exception handlers would
            respond = _refusal(exc, scope)
        await respond(scope, receive, send)


def _refusal(exc: Exception, scope: Scope) -> ASGIApp:
    if isinstance(exc, DomainError):
        problem = domain_problem(exc)
        return problem_response(problem.status, problem.detail, errors=problem.errors, headers=problem.headers)
    return unhandled_response(scope["method"], scope["path"], exc)


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A receive that hands the already-read body over again (or, where the client left mid-body, its
    disconnect), then defers to the real one."""
    pending: list[Message] = [ended or {"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
