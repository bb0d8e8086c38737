"""Model serving: parse, hand to the inference engine, return."""

from fastapi import APIRouter, Depends, Request, Response

from service.auth import Role, require
from service.errors import ProblemError
from service.inference.engine import InferenceEngine
from service.schemas.inference import GenerateRequest, GenerateResponse, ModelInfo, PredictRequest, PredictResponse
from service.schemas.problem import problem_responses

router = APIRouter(prefix="/v1", tags=["inference"])
SERVING_ERRORS = problem_responses(409, 429, 503, 504)


def _engine(request: Request) -> InferenceEngine:
    engine: InferenceEngine | None = request.app.state.inference
    if engine is None:
        raise ProblemError(503, "no model is served: set HELDOUT_MODEL_PATH (or --model)")
    return engine


@router.get("/models", response_model=list[ModelInfo], dependencies=[Depends(require(Role.reader))])
async def models(request: Request) -> list[ModelInfo]:
    engine: InferenceEngine | None = request.app.state.inference
    return [] if engine is None else [engine.info()]


@router.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require(Role.evaluator))],
    responses=SERVING_ERRORS,
)
async def predict(body: PredictRequest, request: Request) -> Response:
    # Serialized here: returned as a model, FastAPI would validate the response a second time.
    response = await _engine(request).predict(body)
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")


@router.post(
    "/generate",
    response_model=GenerateResponse,
    dependencies=[Depends(require(Role.evaluator))],
    responses=SERVING_ERRORS,
)
async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
    return await _engine(request).generate(body)
