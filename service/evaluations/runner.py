"""What an evaluation worker needs of a model: its identity and batched predictions for a list of texts.

``EngineRunner`` drives the served model through the serving engine's public ``predict`` and
``generate``, so evaluation examples share the dynamic batcher (and its queue bound) with online
traffic. Each shard's texts go in as concurrent requests of at most HELDOUT_MAX_INPUTS, which the
batcher merges into full, length-sorted batches.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from service.errors import ProblemError
from service.evaluations.job_store import ModelIdentity
from service.inference.engine import InferenceEngine
from service.schemas.inference import GenerateRequest, PredictRequest
from service.tasks import Task

# Statuses of the serving engine that mean "busy, try again", not "this input is wrong".
TRANSIENT = frozenset({429, 503, 504})
# The serving API refuses empty texts; an empty test input is sent as this (tokenised like an empty one).
EMPTY_INPUT = " "
DEFAULT_MAX_NEW_TOKENS = 64


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
        inputs = [text or EMPTY_INPUT for text in texts]
        try:
            if self._identity.task is Task.generation:
                request = GenerateRequest(
                    inputs=inputs, max_new_tokens=int(options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
                )
                return [out.text for out in (await self._engine.generate(request, record=False)).outputs]
            predicted = await self._engine.predict(PredictRequest(inputs=inputs), record=False)
            return [p.label for p in predicted.predictions]
        except ProblemError as exc:
            if exc.status in TRANSIENT:
                retry = float((exc.headers or {}).get("Retry-After", 1))
                raise Transient(exc.detail, retry) from None
            raise

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
