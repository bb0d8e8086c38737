"""Checks on a JSON request body that must run before FastAPI parses and validates it.

``BoundedJSONRoute`` counts the longest list on the raw bytes (``json_scan``), so an over-long list is
refused without building its items, and refuses strings with lone surrogates, which no JSON encoder
can write back out (echoing or storing them crashed with a 500). ``reject_lone_surrogates`` is the
same text check for handlers on routers that do not use the route class. ``require_json_media_type``, an
app-wide dependency, answers a body sent as anything but JSON (``curl -d`` sends a form) with a 415 naming
the media type, where FastAPI would try to validate the raw bytes and answer a 422 about dictionaries.
"""

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from service.errors import ProblemError
from service.json_scan import lone_surrogate_path, may_hold_surrogates, shape
from service.settings import Settings

# No metrics request nests deeper than a few levels; deeper bodies are refused before parsing.
MAX_DEPTH = 32
JSON_MEDIA_TYPE = "application/json"
SURROGATE_MESSAGE = "holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape); text must be valid Unicode"


def reject_lone_surrogates(body: bytes, parsed: Any) -> None:
    """422 naming the field when a string of the parsed body holds a lone surrogate."""
    if not may_hold_surrogates(body):
        return
    field = lone_surrogate_path(parsed)
    if field is not None:
        raise ProblemError(
            422, f"{field}: {SURROGATE_MESSAGE}", errors=[{"field": field, "message": SURROGATE_MESSAGE}]
        )


def check_list_lengths(body: bytes, max_items: int) -> None:
    """413 when a list (or object) of the raw body has more than ``max_items`` items, or nests too deeply."""
    found = shape(body, max_items, MAX_DEPTH)
    if found is None:
        return
    if found.depth > MAX_DEPTH:
        message = f"arrays and objects nest {found.depth} deep; at most {MAX_DEPTH} levels are accepted"
    else:
        message = f"{found.items} items exceed HELDOUT_MAX_SEGMENTS ({max_items})"
    raise ProblemError(413, f"{found.field}: {message}", errors=[{"field": found.field, "message": message}])


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, with any parameters: what FastAPI parses as JSON."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def takes_json_body(route: object) -> bool:
    """Whether ``route`` declares a body FastAPI reads as JSON (not a form, not one the handler parses itself)."""
    field = getattr(route, "body_field", None)
    return field is not None and not isinstance(field.field_info, params.Form)


async def require_json_media_type(request: Request) -> None:
    """415 when a route that takes JSON gets a non-empty body declared as anything else, or as nothing."""
    if not takes_json_body(request.scope.get("route")) or not await request.body():
        return
    sent = request.headers.get("content-type")
    if is_json_media_type(sent):
        return
    message = (
        f"this route takes a JSON body: send Content-Type: {JSON_MEDIA_TYPE} (curl: -H 'Content-Type: "
        f"{JSON_MEDIA_TYPE}' or --json); the body was sent as {sent or 'no media type'}"
    )
    raise ProblemError(415, message, headers={"Accept-Post": JSON_MEDIA_TYPE})


class BoundedJSONRoute(APIRoute):
    """A route whose JSON body is length-checked and text-checked before it is parsed into objects."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            body = await request.body()
            if body and is_json_media_type(request.headers.get("content-type")):  # else 415, from the dependency
                settings: Settings = request.app.state.settings
                check_list_lengths(body, settings.max_segments)
                if may_hold_surrogates(body):
                    try:
                        parsed = await request.json()
                    except ValueError:
                        parsed = None  # FastAPI answers the invalid JSON with its own 422
                    reject_lone_surrogates(body, parsed)
            return await handler(request)

        return guarded
