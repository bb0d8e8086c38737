"""What an evaluation worker needs of a model: its identity and batched predictions for a list of texts.

``EngineRunner`` drives the served model through the serving engine's ``classify`` and ``generate``,
unrecorded, so evaluation examples share the dynamic batcher (and its queue bound) with online traffic
without passing for it. Each shard's texts go in as concurrent calls of at most HELDOUT_MAX_INPUTS, which
the batcher merges into full, length-sorted batches. A single-label classifier's output keeps its
probabilities (in the model's label order, which the job's options record) for calibration.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from service.domain_errors import Busy, TimedOut, Unavailable
from service.evaluations.job_store import ModelIdentity
from service.inference.chat import Chat, ChatMessage
from service.inference.engine import InferenceEngine, Prompt
from service.inference.options import GenerateOptions
from service.tasks import Task

DEFAULT_MAX_NEW_TOKENS = 64


def chats(texts: Sequence[str], system: str | None) -> list[Prompt]:
    """Each input as a user message, after the job's system message if it has one."""
    head = (ChatMessage("system", system),) if system is not None else ()
    return [Chat((*head, ChatMessage("user", text))) for text in texts]


class Transient(Exception):
    """The model is busy or restarting: retry later without counting an attempt against the shard."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Runner(Protocol):
    @property
    def identity(self) -> ModelIdentity: ...

    async def run(self, texts: Sequence[str], options: dict[str, Any]) -> list[Any]: ...


class EngineRunner:
    def __init__(self, engine: InferenceEngine, max_inputs: int) -> None:
        self._engine = engine
        self._max_inputs = max_inputs
        loaded = engine.loaded
        self._identity = ModelIdentity(loaded.name, loaded.version, loaded.task.task, loaded.task.multilabel)

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    async def _one(self, texts: list[str], options: dict[str, Any]) -> list[Any]:
        try:
            if self._identity.task is Task.generation:
                generate = GenerateOptions(max_new_tokens=int(options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)))
                prompts = chats(texts, options.get("system")) if options.get("chat") else texts
                return [out.text for out in (await self._engine.generate(prompts, generate, record=False)).outputs]
            outputs = (await self._engine.classify(texts, record=False)).outputs
            if self._identity.multilabel:
                return [out.label for out in outputs]
            return [{"label": out.label, "probabilities": out.probabilities} for out in outputs]
        except (Busy, Unavailable) as exc:
            raise Transient(exc.message, exc.retry_after_s or 1) from None
        except TimedOut as exc:
            raise Transient(exc.message, 1) from None

    async def run(self, texts: Sequence[str], options: dict[str, Any]) -> list[Any]:
        """Outputs in input order. Texts go in sorted by length, so the batcher's batches pad little."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        chunks = [ordered[i : i + self._max_inputs] for i in range(0, len(ordered), self._max_inputs)]
        results = await asyncio.gather(*(self._one(chunk, options) for chunk in chunks))
        outputs: list[Any] = [None] * len(texts)
        for i, output in zip(order, (item for chunk in results for item in chunk), strict=True):
            outputs[i] = output
        return outputs
