"""Fixtures shared by the serving tests: tiny saved models (built once per session) and served apps."""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.db.migrate import migrate
from service.db.session import Database
from service.inference.engine import InferenceEngine
from service.inference.prediction_log import PredictionRecord
from service.inference.startup import build_engine
from service.settings import Settings
from tests.tiny_models import (
    CLASSIFIER_LABELS,
    MULTI_LABELS,
    build_classifier,
    build_copy_lm,
    build_keyword_classifier,
    build_lora_adapter,
    build_seq2seq,
)


@pytest.fixture(scope="session")
def one_torch_thread() -> None:
    """The test machine is shared; tiny models gain nothing from more threads."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    return build_classifier(tmp_path_factory.mktemp("models") / "tiny-sentiment", CLASSIFIER_LABELS)


@pytest.fixture(scope="session")
def keyword_dir(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    """A classifier whose decisions rest on a few keywords (``tiny_models.KEYWORDS``)."""
    return build_keyword_classifier(tmp_path_factory.mktemp("models") / "tiny-keywords")


@pytest.fixture(scope="session")
def multilabel_dir(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    return build_classifier(tmp_path_factory.mktemp("models") / "tiny-genres", MULTI_LABELS, multi_label=True)


@pytest.fixture(scope="session")
def seq2seq_dir(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    return build_seq2seq(tmp_path_factory.mktemp("models") / "tiny-t5")


@pytest.fixture(scope="session")
def copy_lm_dir(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    return build_copy_lm(tmp_path_factory.mktemp("models") / "tiny-copy-gpt2")


@pytest.fixture(scope="session")
def lora_lm_dir(tmp_path_factory: pytest.TempPathFactory, copy_lm_dir: Path) -> Path:
    """A CAUSAL_LM adapter on GPT-2's fused attention projection (a Conv1D) of the copy model."""
    return build_lora_adapter(copy_lm_dir, tmp_path_factory.mktemp("adapters") / "copy-lora", "CAUSAL_LM", ["c_attn"])


@pytest.fixture(scope="session")
def lora_classifier_dir(tmp_path_factory: pytest.TempPathFactory, classifier_dir: Path) -> Path:
    """A SEQ_CLS adapter on the classifier's query and value projections, with its own trained head."""
    path = tmp_path_factory.mktemp("adapters") / "sentiment-lora"
    return build_lora_adapter(classifier_dir, path, "SEQ_CLS", ["query", "value"], modules_to_save=["classifier"])


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with serve(model_dir, **settings) as client:`` runs the real app, lifespan included."""

    @contextmanager
    def start(model_dir: Path | None, **overrides: Any) -> Iterator[TestClient]:
        app = create_app(make_settings(model_path=model_dir, **overrides))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return start


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths of the requests that reached FastAPI's dependency solver, i.e. went through a route rather than
    the ASGI fast path."""
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    yield calls


def prediction_record(i: int, chars: int | None = None) -> PredictionRecord:
    """A logged classifier prediction for the prediction-log tests; ``chars`` gives it an input of that length."""
    return PredictionRecord(
        id=f"id-{i}",
        model="m",
        model_version="v",
        task="sequence-classification",
        created_at=datetime.now(UTC),
        features={"n_chars": i if chars is None else chars},
        label="positive",
        score=0.5,
        output=None,
        input_text=None if chars is None else "x" * chars,
    )


@pytest.fixture
def engine_for(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """``async with engine_for(model_dir, **settings) as engine:`` a started engine on a fresh SQLite."""

    @asynccontextmanager
    async def started(model_dir: Path, **overrides: Any) -> AsyncIterator[InferenceEngine]:
        settings = make_settings(model_path=model_dir, **overrides)
        db = Database(settings.resolved_database_url)
        migrate(db, settings.data_dir)
        engine = build_engine(settings, db)
        await engine.start()
        try:
            yield engine
        finally:
            await engine.aclose()
            db.dispose()

    return started


def greedy_alone(tokenizer: Any, model: Any, prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
    """The oracle for served generation: (text, prompt tokens, generated tokens) of the model's own greedy
    ``generate`` on one prompt alone, cut at end-of-sequence."""
    encoded = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        sequence = model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )[0]
    new = sequence[encoded["input_ids"].shape[1] :].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True), encoded["input_ids"].shape[1], len(new)
