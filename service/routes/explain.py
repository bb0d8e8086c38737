"""Explanations: parse, hand to the explainer, answer JSON or, for ``Accept: text/html``, a page."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from service.accept import prefers_html
from service.deps import EvaluatorDep, OptionalExplainerDep, explaining
from service.explanations.options import ExplainOptions
from service.schemas.explain import ExplainRequest, ExplainResponse
from service.schemas.problem import problem_responses
from service.views.explain import explain_response
from service.views.explain_page import PAGE_HEADERS, explain_page

router = APIRouter(prefix="/v1", tags=["explanations"])
PAGE = {"description": "With Accept: text/html, a self-contained page.", "content": {"text/html": {}}}


def explain_options(body: ExplainRequest) -> ExplainOptions:
    return ExplainOptions(
        method=body.method,
        target=body.target,
        n_steps=body.n_steps,
        n_samples=body.n_samples,
        seed=body.seed,
        faithfulness=body.faithfulness,
    )


@router.post("/explain", response_model=ExplainResponse, responses={200: PAGE, **problem_responses(429, 503, 504)})
async def explain(_: EvaluatorDep, body: ExplainRequest, request: Request, explainer: OptionalExplainerDep) -> Response:
    result = await explaining(explainer).explain(body.inputs, explain_options(body))
    if prefers_html(request.headers.get("accept")):
        return HTMLResponse(explain_page(result, body.inputs), headers=PAGE_HEADERS)
    return Response(explain_response(result).model_dump_json(), media_type="application/json")
