"""The problem+json body. ``service.openapi`` documents 400/401/403/413/422 on every operation;
routes declare only their own extra statuses (404, 409, 429, ...) with ``problem_responses``."""

from typing import Any

from pydantic import BaseModel

from service.errors import TITLES


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Declares a route's extra error statuses; ``service.openapi`` gives each the Problem body."""
    return {status: {"description": TITLES.get(status, "Error")} for status in statuses}

