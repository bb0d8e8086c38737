"""OpenAI-compatible serving: /v1/completions and /v1/chat/completions, answered or streamed as server-sent
events in OpenAI's chunk format, so the official SDKs and tools built on them (lm-eval) work unchanged.

A streamed request waits for its first token before answering, so refusals keep their status and
problem+json; one that fails later ends with an ``error`` event, which OpenAI's SDKs raise.
"""

import json
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from service.deps import EvaluatorDep, OptionalEngineDep, served
from service.domain_errors import DomainError
from service.errors import domain_problem, openai_error
from service.inference.chat import Chat, ChatMessage
from service.inference.engine import InferenceEngine, Prompt
from service.inference.engine_errors import ModelNotServed
from service.inference.options import GenerateOptions
from service.inference.results import Generated
from service.inference.rows import Delta
from service.schemas.openai import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    FinishReason,
    SamplingFields,
    Usage,
)
from service.schemas.problem import problem_responses

router = APIRouter(prefix="/v1", tags=["openai"])
EVENT_STREAM = "text/event-stream"
DONE = "data: [DONE]\n\n"
"""Ends every stream: the last piece ``_sse`` yields ends with it, and no other piece does."""
RESPONSES: dict[int | str, dict[str, Any]] = {
    **problem_responses(404, 409, 429, 503, 504),
    200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}, "description": "The answer, or its chunks."},
}


def serving(engine: InferenceEngine | None, model: str) -> InferenceEngine:
    """The served model, if it is the one the request names."""
    engine = served(engine)
    if model != engine.loaded.name:
        raise ModelNotServed(model, engine.loaded.name)
    return engine


def sampling_options(body: SamplingFields, max_tokens: int | None, length_field: str) -> GenerateOptions:
    """OpenAI's temperature 0 is greedy decoding."""
    return GenerateOptions(
        max_new_tokens=max_tokens,
        length_field=length_field,
        do_sample=body.temperature > 0,
        temperature=body.temperature or 1.0,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stops(),
    )


def _finish(reason: str) -> FinishReason:
    # "abort" only ends rows whose caller has gone, so no answer carries it.
    return "stop" if reason == "stop" else "length"


def _usage(result: Generated) -> Usage:
    prompt = sum(out.n_tokens for out in result.outputs)
    completion = sum(out.tokens for out in result.outputs)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class DeltaEvents:
    """A stream's text events, each chunk serialized once per choice with a placeholder where its text goes.

    An event then costs one ``json.dumps`` of its text instead of a pydantic model built and dumped: it runs
    once per event on the event loop, which shares the GIL with the decoding lanes.
    """

    PLACEHOLDER = "heldout-delta-text"

    def __init__(self, chunk: Callable[[int, str], BaseModel]) -> None:
        self._chunk = chunk
        self._parts: dict[int, tuple[str, str]] = {}

    def event(self, delta: Delta) -> str:
        parts = self._parts.get(delta.index)
        if parts is None:
            whole = self._chunk(delta.index, self.PLACEHOLDER).model_dump_json(exclude_none=True)
            head, _, tail = whole.rpartition(json.dumps(self.PLACEHOLDER))
            parts = self._parts[delta.index] = (f"data: {head}", f"{tail}\n\n")
        return parts[0] + json.dumps(delta.text, ensure_ascii=False) + parts[1]


class CompletionShape:
    """/v1/completions: a chunk has the response's shape, with ``text`` the new text."""

    def __init__(self, model: str) -> None:
        self.head: dict[str, Any] = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        self.deltas = DeltaEvents(
            lambda index, text: Completion(
                **self.head, choices=[CompletionChoice(index=index, text=text, finish_reason=None)]
            )
        )

    def whole(self, result: Generated) -> BaseModel:
        choices = [
            CompletionChoice(index=i, text=out.text, finish_reason=_finish(out.finish_reason))
            for i, out in enumerate(result.outputs)
        ]
        return Completion(**self.head, choices=choices, usage=_usage(result))

    def opening(self, count: int) -> list[BaseModel]:
        return []

    def closing(self, result: Generated, usage: bool) -> list[BaseModel]:
        chunks: list[BaseModel] = [
            Completion(**self.head, choices=[CompletionChoice(index=i, text="", finish_reason=_finish(reason))])
            for i, reason in enumerate(out.finish_reason for out in result.outputs)
        ]
        return chunks + ([Completion(**self.head, choices=[], usage=_usage(result))] if usage else [])


class ChatShape:
    """/v1/chat/completions: chunks carry a ``delta``; the first of each choice names the role."""

    def __init__(self, model: str) -> None:
        self.head: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        self.deltas = DeltaEvents(
            lambda index, text: ChatCompletionChunk(
                **self.head, choices=[ChatChunkChoice(index=index, delta=ChatDelta(content=text))]
            )
        )

    def whole(self, result: Generated) -> BaseModel:
        choices = [
            ChatChoice(index=i, message=AssistantMessage(content=out.text), finish_reason=_finish(out.finish_reason))
            for i, out in enumerate(result.outputs)
        ]
        return ChatCompletion(**self.head, choices=choices, usage=_usage(result))

    def opening(self, count: int) -> list[BaseModel]:
        role = ChatDelta(role="assistant", content="")
        return [ChatCompletionChunk(**self.head, choices=[ChatChunkChoice(index=i, delta=role)]) for i in range(count)]

    def closing(self, result: Generated, usage: bool) -> list[BaseModel]:
        chunks: list[BaseModel] = [
            ChatCompletionChunk(
                **self.head, choices=[ChatChunkChoice(index=i, delta=ChatDelta(), finish_reason=_finish(reason))]
            )
            for i, reason in enumerate(out.finish_reason for out in result.outputs)
        ]
        return chunks + ([ChatCompletionChunk(**self.head, choices=[], usage=_usage(result))] if usage else [])


Shape = CompletionShape | ChatShape


def _event(chunk: BaseModel | dict[str, Any]) -> str:
    data = chunk.model_dump_json(exclude_none=True) if isinstance(chunk, BaseModel) else json.dumps(chunk)
    return f"data: {data}\n\n"


async def _sse(
    first: Delta | Generated, events: AsyncGenerator[Delta | Generated, None], shape: Shape, count: int, usage: bool
) -> AsyncGenerator[str, None]:
    """The chunks, then ``data: [DONE]``, the closing chunks in one piece. A client that leaves cancels this,
    and closing ``events`` stops its generation."""
    ending = DONE
    try:
        for chunk in shape.opening(count):
            yield _event(chunk)
        event: Delta | Generated | None = first
        while isinstance(event, Delta):
            yield shape.deltas.event(event)
            event = await anext(events, None)
        if event is not None:
            ending = "".join(_event(chunk) for chunk in shape.closing(event, usage)) + ending
    except DomainError as exc:
        problem = domain_problem(exc)
        ending = _event({"error": openai_error(problem.status, problem.detail, problem.errors)}) + ending
    finally:
        await events.aclose()
    yield ending


@dataclass(frozen=True)
class Call:
    """A completion request as the engine takes it: what the routes and the ASGI fast path both answer."""

    engine: InferenceEngine
    prompts: Sequence[Prompt]
    options: GenerateOptions
    shape: Shape
    stream: bool
    usage: bool


def completion_call(engine: InferenceEngine | None, body: CompletionRequest) -> Call:
    model = serving(engine, body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    options = sampling_options(body, body.max_tokens, "max_tokens")
    return _call(model, prompts, body, options, CompletionShape(model.loaded.name))


def chat_call(engine: InferenceEngine | None, body: ChatCompletionRequest) -> Call:
    model = serving(engine, body.model)
    # Templates know OpenAI's newer "developer" role as what it replaced.
    chat = Chat(tuple(ChatMessage("system" if m.role == "developer" else m.role, m.text()) for m in body.messages))
    length_field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    options = sampling_options(body, body.max_completion_tokens or body.max_tokens, length_field)
    return _call(model, [chat], body, options, ChatShape(model.loaded.name))


def _call(
    engine: InferenceEngine, prompts: Sequence[Prompt], body: SamplingFields, options: GenerateOptions, shape: Shape
) -> Call:
    usage = body.stream_options is not None and body.stream_options.include_usage
    return Call(engine, prompts, options, shape, body.stream, usage)


async def whole_json(call: Call) -> bytes:
    """The whole answer, once generated."""
    result = await call.engine.generate(call.prompts, call.options)
    return call.shape.whole(result).model_dump_json(exclude_none=True).encode()


async def opened_stream(call: Call) -> AsyncGenerator[str, None]:
    """The answer's server-sent events, once the first token is out: refusals raise here, before any byte."""
    events = call.engine.stream(call.prompts, call.options)
    first = await anext(events)
    return _sse(first, events, call.shape, len(call.prompts), call.usage)


async def answer(call: Call) -> Response:
    """The whole response as JSON, or (``stream``) its chunks as they are generated."""
    if not call.stream:
        return Response(await whole_json(call), media_type="application/json")
    return StreamingResponse(await opened_stream(call), media_type=EVENT_STREAM)


@router.post("/completions", response_model=Completion, response_model_exclude_none=True, responses=RESPONSES)
async def completions(_: EvaluatorDep, body: CompletionRequest, engine: OptionalEngineDep) -> Response:
    return await answer(completion_call(engine, body))


@router.post("/chat/completions", response_model=ChatCompletion, response_model_exclude_none=True, responses=RESPONSES)
async def chat_completions(_: EvaluatorDep, body: ChatCompletionRequest, engine: OptionalEngineDep) -> Response:
    return await answer(chat_call(engine, body))
