"""The problem+json body. ``service.openapi`` documents 400/401/403/413/415/422 on every operation;
routes declare only their own extra statuses (404, 409, 429, ...) with ``problem_responses``."""

from typing import Any

from pydantic import BaseModel, Field

from service.errors import TITLES


class FieldError(BaseModel):
    field: str
    message: str


class OpenAIError(BaseModel):
    """The same refusal in OpenAI's error shape, for OpenAI SDKs."""

    message: str = Field(description="The problem's detail.")
    type: str = Field(description="invalid_request_error, authentication_error, not_found_error, ...")
    code: str = Field(description="The status title in snake case: unprocessable_content, too_many_requests, ...")
    param: str | None = Field(description="The first field at fault, if any.")


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    error: OpenAIError


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Declares a route's extra error statuses; ``service.openapi`` gives each the Problem body."""
    return {status: {"description": TITLES.get(status, "Error")} for status in statuses}

