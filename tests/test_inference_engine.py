"""The serving engine below HTTP: texts and options in, domain results and domain errors out."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.domain_errors import Busy, DomainError, Invalid, TimedOut, Unavailable
from service.errors import domain_problem
from service.evaluations.runner import EngineRunner, Transient
from service.inference.batcher import BatcherRejected, Closing, QueueFull, QueueTimeout, RunTimeout
from service.inference.engine_errors import EngineBusy, NewTokensOutOfRange, TooManyInputs, WrongTask, refusal
from service.inference.options import GenerateOptions
from service.tasks import ModelTask
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]


REFUSALS: list[tuple[BatcherRejected, type[DomainError], int, str, str | None]] = [
    (QueueFull("8 examples are queued", 2), Busy, 429, "inference queue is full: 8 examples are queued", "2"),
    (QueueTimeout("still queued after the 1 s request timeout", 3), Unavailable, 503,
     "inference still queued after the 1 s request timeout", "3"),
    (RunTimeout("inference did not finish"), TimedOut, 504, "inference did not finish", None),
    (Closing("the server is shutting down", 4), Unavailable, 503, "the server is shutting down", "4"),
]  # fmt: skip


@pytest.mark.parametrize(("rejected", "kind", "status", "detail", "retry_after"), REFUSALS)
def test_batcher_refusals_become_domain_errors_with_the_same_http_answers(
    rejected: BatcherRejected, kind: type[DomainError], status: int, detail: str, retry_after: str | None
) -> None:
    error = refusal(rejected)
    assert isinstance(error, kind)
    problem = domain_problem(error)
    assert (problem.status, problem.detail, problem.errors) == (status, detail, None)
    assert (problem.headers or {}).get("Retry-After") == retry_after


def test_invalid_calls_name_their_field_and_wrong_tasks_the_other_endpoint() -> None:
    too_many = domain_problem(TooManyInputs(4, 3))
    assert too_many.status == 422 and too_many.detail == "inputs: 4 inputs exceed HELDOUT_MAX_INPUTS (3)"
    assert too_many.errors == [{"field": "inputs", "message": "4 inputs exceed HELDOUT_MAX_INPUTS (3)"}]
    assert isinstance(NewTokensOutOfRange("x", "max_tokens"), Invalid)
    assert NewTokensOutOfRange("x", "max_tokens").field == "max_tokens"
    wrong = domain_problem(WrongTask("m", ModelTask.causal_lm))
    assert (wrong.status, wrong.detail) == (409, "model m is a causal-lm model; use /v1/generate")


def test_classify_takes_texts_and_checks_its_bounds(classifier_dir: Path, engine_for: Callable[..., Any]) -> None:
    async def scenario() -> None:
        async with engine_for(classifier_dir, max_inputs=3) as engine:
            result = await engine.classify(SENTENCES[:2], record=False)
            assert (result.model, len(result.ids), len(result.outputs)) == ("tiny-sentiment", 2, 2)
            assert result.labels == engine.loaded.labels
            assert all(len(out.probabilities) == len(result.labels) for out in result.outputs)
            with pytest.raises(TooManyInputs):
                await engine.classify(["a"] * 4)
            with pytest.raises(WrongTask, match="use /v1/predict"):
                await engine.generate(["a"], GenerateOptions())

    asyncio.run(scenario())


def test_generate_takes_options_and_checks_them(copy_lm_dir: Path, engine_for: Callable[..., Any]) -> None:
    async def scenario() -> None:
        async with engine_for(copy_lm_dir, max_new_tokens=16) as engine:
            result = await engine.generate(["a b c d ="], GenerateOptions(max_new_tokens=4), record=False)
            assert result.outputs[0].tokens <= 4 and result.outputs[0].text.split() == ["a", "b", "c", "d"]
            for tokens in (0, 17):
                with pytest.raises(NewTokensOutOfRange):
                    await engine.generate(["a"], GenerateOptions(max_new_tokens=tokens))
            with pytest.raises(WrongTask, match="use /v1/generate"):
                await engine.classify(["a"])

    asyncio.run(scenario())


@pytest.mark.parametrize("model", ["classifier_dir", "multilabel_dir", "copy_lm_dir", "seq2seq_dir"])
def test_empty_texts_are_answered_as_they_are(
    model: str, request: pytest.FixtureRequest, engine_for: Callable[..., Any]
) -> None:
    """An evaluation's test set may hold empty inputs; they go to the model unchanged, beside others."""

    async def scenario() -> list[Any]:
        async with engine_for(request.getfixturevalue(model)) as engine:
            runner = EngineRunner(engine, max_inputs=8)
            return await runner.run(["", SENTENCES[0], ""], {"max_new_tokens": 3})

    outputs = asyncio.run(scenario())
    assert len(outputs) == 3 and outputs[0] == outputs[2]


class _BusyEngine:
    """Stands in for a started engine whose queue is full."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded

    async def classify(self, texts: list[str], *, record: bool = True) -> Any:
        raise EngineBusy("inference queue is full", retry_after_s=7)


def test_runner_retries_a_busy_engine_later(classifier_dir: Path, engine_for: Callable[..., Any]) -> None:
    async def scenario() -> None:
        async with engine_for(classifier_dir) as engine:
            runner = EngineRunner(_BusyEngine(engine.loaded), max_inputs=8)  # type: ignore[arg-type]
            with pytest.raises(Transient) as busy:
                await runner.run(["a"], {})
            assert busy.value.retry_after_s == 7

    asyncio.run(scenario())
