"""A live server standing in for the demo the README walks through, so its commands run as written.

The real demo is MiniLM fine-tuned on Rotten Tomatoes (minutes to build). The stand-in is a tiny random BERT
with the demo's labels, saved where ``heldout serve`` keeps the demo model, with a held-out split of
review-like sentences beside it: the server registers it as the blind set ``rotten-tomatoes`` with the
demo's protections (Ladder on F1, daily budget), exactly as it registers the real one. The README's
``$KEY`` is an evaluator key and ``$ADMIN_KEY`` the admin key.
"""

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.app import create_app
from service.inference.demo import demo_dir
from service.inference.demo_data import LABELS, TEST_SET_FILE
from service.settings import Settings
from tests.conftest import KEYS, env_keys
from tests.live_server import served_in_thread
from tests.tiny_models import SENTENCES, build_classifier

SPLIT_SIZE = 60
DRIFT_MIN_ROWS = 10
SHELL_ENV = {"KEY": KEYS["evaluator"], "ADMIN_KEY": KEYS["admin"]}


def stand_in_split() -> list[dict[str, str]]:
    rng = random.Random(18)
    return [
        {"id": f"rt-{i:05d}", "text": rng.choice(SENTENCES), "label": LABELS[i % len(LABELS)]}
        for i in range(SPLIT_SIZE)
    ]


def build_demo_stand_in(model: Path, split: list[dict[str, str]]) -> Path:
    """The tiny classifier with the demo's labels, saved at ``model`` with ``split`` as its held-out set."""
    build_classifier(model, list(LABELS))
    (model / TEST_SET_FILE).write_text("".join(json.dumps(row) + "\n" for row in split), encoding="utf-8")
    return model


@contextmanager
def docs_server(data_dir: Path, **overrides: Any) -> Iterator[str]:
    """The stand-in demo served by uvicorn; yields its base URL. Small resample and row counts keep it quick."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model_path": build_demo_stand_in(demo_dir(data_dir), stand_in_split()),
        "api_keys": env_keys(),
        "metric_workers": 1,
        "scoring_resamples": 200,
        "evaluation_shard_size": 16,
        "evaluation_poll_s": 0.05,
        "drift_min_rows": DRIFT_MIN_ROWS,
        "drift_executor": "thread",
    }
    values.update(overrides)
    with served_in_thread(create_app(Settings(**values))) as base_url:
        yield base_url
