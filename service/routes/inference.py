"""Model serving: parse, hand to the inference engine, return; and the HTTP shapes of the engine's answers."""

from fastapi import APIRouter, Response

from service.deps import EvaluatorDep, OptionalEngineDep, ReaderDep, served
from service.inference.engine import InferenceEngine
from service.inference.options import GenerateOptions
from service.inference.results import Classified, Generated
from service.schemas.inference import (
    GenerateRequest,
    GenerateResponse,
    Generation,
    ModelInfo,
    Prediction,
    PredictRequest,
    PredictResponse,
)
from service.schemas.openai import ModelCard, ModelList
from service.schemas.problem import problem_responses

router = APIRouter(prefix="/v1", tags=["inference"])
SERVING_ERRORS = problem_responses(409, 429, 503, 504)


def predict_json(result: Classified, return_scores: bool) -> bytes:
    """The /v1/predict answer, serialized once: the route and the fast path both send these bytes."""
    predictions = [
        Prediction(
            id=pid,
            label=out.label,
            score=out.score,
            scores=dict(zip(result.labels, out.probabilities, strict=True)) if return_scores else None,
            truncated=out.truncated,
        )
        for pid, out in zip(result.ids, result.outputs, strict=True)
    ]
    response = PredictResponse(model=result.model, model_version=result.model_version, predictions=predictions)
    return response.model_dump_json(exclude_none=True).encode()


def generate_options(body: GenerateRequest) -> GenerateOptions:
    return GenerateOptions(
        max_new_tokens=body.max_new_tokens,
        num_beams=body.num_beams,
        do_sample=body.do_sample,
        temperature=body.temperature,
        seed=body.seed,
    )


def generate_response(result: Generated) -> GenerateResponse:
    outputs = [
        Generation(id=pid, text=out.text, tokens=out.tokens, truncated=out.truncated)
        for pid, out in zip(result.ids, result.outputs, strict=True)
    ]
    return GenerateResponse(model=result.model, model_version=result.model_version, outputs=outputs)


def model_list(engine: InferenceEngine | None) -> ModelList:
    """OpenAI's list envelope, so ``client.models.list()`` works; each entry also keeps heldout's fields."""
    if engine is None:
        return ModelList(data=[])
    info = ModelInfo.model_validate(engine.info(), from_attributes=True)
    return ModelList(data=[ModelCard(**info.model_dump(), id=info.name, created=engine.started_at)])


@router.get("/models", response_model=ModelList)
async def models(_: ReaderDep, engine: OptionalEngineDep) -> ModelList:
    return model_list(engine)


@router.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=SERVING_ERRORS)
async def predict(_: EvaluatorDep, body: PredictRequest, engine: OptionalEngineDep) -> Response:
    # Serialized here: returned as a model, FastAPI would validate the response a second time.
    payload = predict_json(await served(engine).classify(body.inputs), body.return_scores)
    return Response(payload, media_type="application/json")


@router.post("/generate", response_model=GenerateResponse, responses=SERVING_ERRORS)
async def generate(_: EvaluatorDep, body: GenerateRequest, engine: OptionalEngineDep) -> GenerateResponse:
    return generate_response(await served(engine).generate(body.inputs, generate_options(body)))
