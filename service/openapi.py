"""The generated OpenAPI document, corrected once so clients, schema checkers and ``/docs`` see the truth.

- **Errors.** FastAPI documents validation errors as its own ``HTTPValidationError`` JSON; heldout answers
  them as problem+json. Rather than repeating ``responses=`` on every route: 422 on anything with inputs,
  401/403 on anything that needs a key, 400/413/415 on anything with a body.
- **Examples.** Each request model carries its example in its JSON Schema (``json_schema_extra``). Swagger UI
  fills "Try it out" from the media type's ``example``/``examples``, so each is copied there too.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.errors import PROBLEM_JSON, TITLES
from service.schemas.problem import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
COMPONENT = "#/components/schemas/"


def _problem(status: int) -> dict[str, Any]:
    return {"description": TITLES.get(status, "Error"), "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _document_problems(operation: dict[str, Any]) -> None:
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


def _named_examples(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """{component name: its first example} for a body schema: a reference, or a union of references."""
    refs = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
    found = {}
    for ref in refs:
        name = ref.get("$ref", "").removeprefix(COMPONENT)
        examples = schemas.get(name, {}).get("examples") if name else None
        if examples:
            found[name] = examples[0]
    return found


def _copy_examples(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        named = _named_examples(media.get("schema", {}), schemas)
        if len(named) == 1:
            media["example"] = next(iter(named.values()))
        elif named:
            media["examples"] = {name: {"summary": name, "value": value} for name, value in named.items()}


def install_openapi(app: FastAPI) -> None:
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
                    _document_problems(operation)
                    _copy_examples(operation, schemas)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
