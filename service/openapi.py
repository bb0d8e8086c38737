"""Documents the one error format on every operation, so clients and schema checkers see the truth.

FastAPI documents validation errors as its own ``HTTPValidationError`` JSON; heldout answers them
as problem+json. Rather than repeating ``responses=`` on every route, the generated document is
corrected once: 422 on anything with inputs, 401/403 on anything that needs a key, 400/413/415 on
anything with a body.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.errors import PROBLEM_JSON, TITLES
from service.schemas.problem import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem(status: int) -> dict[str, Any]:
    return {"description": TITLES.get(status, "Error"), "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _document(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    statuses: set[int] = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses |= {400, 413, 415}
    if operation.get("security"):
        statuses |= {401, 403}
    for status in statuses:
        responses[str(status)] = _problem(status)


def install_problem_docs(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    _document(operation)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
