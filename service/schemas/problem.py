"""The problem+json body, documented on every route so clients and schema checkers know it."""

from typing import Any

from pydantic import BaseModel

from service.errors import PROBLEM_JSON


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
    return {
        status: {"model": Problem, "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}}}
        for status in statuses
    }


AUTH_ERRORS = problem_responses(401, 403)
BODY_ERRORS = problem_responses(400, 413, 422)
