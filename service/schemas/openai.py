"""OpenAI's models, completions and chat completions contracts, as the official SDK (v3) parses them.

Requests forbid what heldout does not do (logprobs, tools, n > 1, penalties, ...), so a client learns it
from a 422 naming the field rather than from silently different output.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from service.inference.options import MAX_STOPS
from service.schemas.inference import ModelInfo

Stop = Annotated[StrictStr, StringConstraints(min_length=1)]


class ModelCard(ModelInfo):
    """OpenAI's model object, beside heldout's own description of the model."""

    id: str = Field(description="The name to send as a request's model.")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds when the model started serving.")
    owned_by: str = "heldout"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(False, description="Send a last chunk with empty choices and the usage.")


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="The served model's name (GET /v1/models).")
    max_tokens: int | None = Field(
        None, ge=1, description="Tokens to generate at most (capped by HELDOUT_MAX_NEW_TOKENS)."
    )
    temperature: float = Field(1.0, ge=0, le=2, description="0 is greedy decoding; above it, sampling.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: the smallest token set with this mass.")
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = Field(
        None, description=f"Up to {MAX_STOPS} strings; the text ends before the first one generated."
    )
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Makes sampling repeatable.")
    n: Literal[1] = Field(1, description="Choices per prompt: heldout generates one.")
    stream: bool = Field(False, description="Answer text/event-stream chunks as tokens are generated.")
    stream_options: StreamOptions | None = None

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(SamplingFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "my-model",
                    "prompt": "Translate to French: cheese =>",
                    "max_tokens": 16,
                    "temperature": 0,
                    "stop": ["\n"],
                }
            ]
        }
    )

    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] = Field(
        description="A prompt, or a list of prompts (one choice each, at most HELDOUT_MAX_INPUTS)."
    )


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] = Field(description="Text, or text parts (joined).")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "my-model",
                    "messages": [{"role": "user", "content": "Summarise in one line: the film is long but moving."}],
                    "max_tokens": 64,
                    "temperature": 0,
                }
            ]
        }
    )

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens; wins.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


FinishReason = Literal["stop", "length"]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None = Field(description="stop: end of text or a stop string; length: max_tokens.")
    logprobs: None = None


class Completion(BaseModel):
    """A response, or (with ``stream``) one chunk of one: OpenAI gives both one shape."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(description="Unix seconds.")
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
