"""Fixtures shared by the serving tests: tiny saved models (built once per session) and served apps."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.inference.prediction_log import PredictionRecord
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
