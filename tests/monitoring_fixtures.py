"""Helpers for monitoring tests: synthetic logged traffic (fixed seeds), monitored apps, polling checks.

The synthetic traffic imitates a movie-review classifier's: in-distribution rows draw words from a
movie vocabulary; shifted rows come from a finance vocabulary, are longer, carry more unknown tokens,
less confident and more one-sided predictions, and embeddings moved off the reference's centre.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert

from monitors.projection import SKETCH_DIM
from service.app import create_app
from service.db.migrate import migrate
from service.db.models import PredictionLogEntry
from service.db.session import Database
from service.settings import Settings
from tests.conftest import auth

MODEL = "tiny-sentiment"
MOVIE_WORDS = [f"film{i}" for i in range(200)] + ["plot", "actor", "scene", "director", "cast", "screenplay"]
FINANCE_WORDS = [f"stock{i}" for i in range(200)] + ["market", "bank", "rate", "price", "trade", "bond"]


def synthetic_rows(
    n: int, *, shifted: bool, seed: int, start: datetime, model: str = MODEL, spacing_s: float = 0.01
) -> list[dict[str, Any]]:
    """Prediction log rows, ``spacing_s`` apart from ``start``."""
    rng = np.random.default_rng(seed)
    vocab = FINANCE_WORDS if shifted else MOVIE_WORDS
    weights = np.arange(1, len(vocab) + 1, dtype=float) ** -1.1
    weights /= weights.sum()
    centre = np.full(SKETCH_DIM, 0.8 if shifted else 0.0)
    rows = []
    for i in range(n):
        words = int(rng.integers(5, 15)) + (6 if shifted else 0)
        text = " ".join(rng.choice(vocab, words, p=weights))
        label = str(rng.choice(["positive", "negative"], p=[0.85, 0.15] if shifted else [0.5, 0.5]))
        features = {
            "n_chars": len(text),
            "n_tokens": words + 2,
            "unk_share": round(float(rng.beta(1, 8 if shifted else 40)), 6),
            "truncated": False,
            "embedding": np.round(rng.normal(centre, 1.0), 4).tolist(),
        }
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "model": model,
                "model_version": "v1",
                "task": "sequence-classification",
                "created_at": start + timedelta(seconds=i * spacing_s),
                "features": features,
                "label": label,
                "score": float(rng.beta(3, 2) if shifted else rng.beta(8, 2)),
                "output": None,
                "input_text": text,
            }
        )
    return rows


def insert_rows(database_url: str, lock_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Into the prediction log, migrating the database first if no app has yet."""
    db = Database(database_url)
    try:
        migrate(db, lock_dir)
        with db.engine.begin() as connection:
            for start in range(0, len(rows), 2000):
                connection.execute(insert(PredictionLogEntry), rows[start : start + 2000])
    finally:
        db.dispose()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@contextmanager
def monitored_client(make_settings: Callable[..., Settings], **overrides: Any) -> Iterator[TestClient]:
    """The real app, lifespan included; drift checks in a thread (one Evidently import per test session)."""
    values: dict[str, Any] = {"drift_executor": "thread", "drift_min_rows": 50, **overrides}
    with TestClient(create_app(make_settings(**values)), raise_server_exceptions=False) as client:
        yield client


def wait_for_check(client: TestClient, check_id: int, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(f"/v1/drift/checks/{check_id}", headers=auth("reader")).json()
        if body["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)
