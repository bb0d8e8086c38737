"""Why the serving engine refuses a call, as domain errors: ``service.errors`` turns them into HTTP answers."""

from service.domain_errors import Busy, Conflict, DomainError, Invalid, NotFound, TimedOut, Unavailable
from service.inference.batcher import BatcherRejected, Closing, QueueFull, QueueTimeout, RunTimeout
from service.tasks import ModelTask


class WrongTask(Conflict):
    """A classifier asked to generate, or a generator asked to classify."""

    def __init__(self, model: str, task: ModelTask) -> None:
        hint = "/v1/predict" if task.classifies else "/v1/generate"
        super().__init__(f"model {model} is a {task} model; use {hint}")
        self.model = model
        self.task = task


class ModelNotServed(NotFound):
    """A request names another model than the one served."""

    def __init__(self, asked: str, served: str) -> None:
        super().__init__(f"model {asked!r} is not served; this server serves {served!r} (GET /v1/models)")


class TooManyInputs(Invalid):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} inputs exceed HELDOUT_MAX_INPUTS ({limit})", field="inputs")


class NewTokensOutOfRange(Invalid):
    """More new tokens than the service allows, or than fit beside the prompt in a causal LM's positions."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field=field)


class NoChatTemplate(Invalid):
    """A chat request to a model whose tokenizer has no chat template, with none set by HELDOUT_CHAT_TEMPLATE."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model} has no chat template: use /v1/completions, or set HELDOUT_CHAT_TEMPLATE to a Jinja "
            "template file",
            field="messages",
        )


class ChatTemplateFailed(Invalid):
    """The chat template refused the conversation (roles out of turn, an unknown role, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the model's chat template cannot format these messages: {reason}", field="messages")


class EngineBusy(Busy):
    """The batcher's queue is full."""


class QueueTimedOut(Unavailable):
    """The request timeout passed while inputs were still queued; they were withdrawn unrun."""


class RunTimedOut(TimedOut):
    """The request timeout passed while the model was computing."""


class ShuttingDown(Unavailable):
    """The engine finishes what it has but takes nothing new."""


def refusal(exc: BatcherRejected) -> DomainError:
    """The engine's words for the batcher's refusal, with its Retry-After estimate where one helps."""
    if isinstance(exc, QueueFull):
        return EngineBusy(f"inference queue is full: {exc}", retry_after_s=exc.retry_after_s)
    if isinstance(exc, RunTimeout):
        return RunTimedOut(str(exc))
    if isinstance(exc, Closing):
        return ShuttingDown(str(exc), retry_after_s=exc.retry_after_s)
    assert isinstance(exc, QueueTimeout), exc
    return QueueTimedOut(f"inference {exc}", retry_after_s=exc.retry_after_s)
