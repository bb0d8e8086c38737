"""POST /v1/predict served straight from ASGI, past FastAPI's router and dependency solver.

Under load on a CPU, the event loop's per-request cost competes with the model for the GIL, and most of
it was framework: routing, dependency solving, request wrappers (about half of the loop's time at 64
clients). This middleware answers the common case itself: a JSON body that validates against the
route's own ``PredictRequest``, from a key with the evaluator role. Anything else (no key, a bad key,
a body that does not validate, no model) goes on to the FastAPI route unchanged, body replayed, so
every error comes from the one place that produces errors; the engine's own refusals are answered through
``service.errors.domain_problem``, as the route's handler answers them. The route stays declared for the
OpenAPI contract and is what this path must equal: both serialize with ``routes.inference.predict_json``.
"""

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import KeyStore, Role
from service.domain_errors import DomainError
from service.errors import domain_problem, problem_response, unhandled_response
from service.inference.engine import InferenceEngine
from service.middleware import ROUTE_TEMPLATE
from service.routes.inference import predict_json
from service.schemas.inference import PredictRequest

PATH = "/v1/predict"
JSON_HEADERS = [(b"content-type", b"application/json")]


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


class PredictFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
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
            request = None if ended else PredictRequest.model_validate_json(body)
        except ValidationError:
            request = None
        if request is None:
            await self.app(scope, _replay(body, ended, receive), send)
            return
        scope[ROUTE_TEMPLATE] = PATH
        try:
            payload = predict_json(await engine.classify(request.inputs), request.return_scores)
        except DomainError as exc:  # answered as the route's exception handler would
            problem = domain_problem(exc)
            refused = problem_response(problem.status, problem.detail, errors=problem.errors, headers=problem.headers)
            await refused(scope, receive, send)
            return
        except Exception as exc:  # the route's catch-all handler sits inside FastAPI, behind this path
            await unhandled_response("POST", PATH, exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A receive that hands the already-read body over again (or, where the client left mid-body, its
    disconnect), then defers to the real one."""
    pending: list[Message] = [ended or {"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
