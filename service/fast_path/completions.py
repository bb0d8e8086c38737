"""/v1/completions and /v1/chat/completions on the fast path, through the route module's own functions."""

from starlette.types import ASGIApp

from service.fast_path.answers import event_stream, json_answer
from service.inference.engine import InferenceEngine
from service.routes.openai import DONE, Call, chat_call, completion_call, opened_stream, whole_json
from service.schemas.openai import ChatCompletionRequest, CompletionRequest


async def answer_completion(engine: InferenceEngine, request: CompletionRequest) -> ASGIApp:
    return await _answer(completion_call(engine, request))


async def answer_chat(engine: InferenceEngine, request: ChatCompletionRequest) -> ASGIApp:
    return await _answer(chat_call(engine, request))


async def _answer(call: Call) -> ASGIApp:
    if call.stream:
        return event_stream(await opened_stream(call), DONE)
    return json_answer(await whole_json(call))
