"""POST /v1/predict on the fast path: the route's answer, serialized by the route module's own function."""

from starlette.types import ASGIApp

from service.fast_path.answers import json_answer
from service.inference.engine import InferenceEngine
from service.routes.inference import predict_json
from service.schemas.inference import PredictRequest


async def answer_predict(engine: InferenceEngine, request: PredictRequest) -> ASGIApp:
    return json_answer(predict_json(await engine.classify(request.inputs), request.return_scores))
