"""The demo's held-out split becomes its blind test set, once, whatever the number of starts."""

import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.inference.demo import demo_dir
from service.inference.demo_data import TEST_SET_FILE
from service.test_sets.demo import DEMO_TEST_SET
from tests.conftest import auth
from tests.inference_fixtures import CLASSIFIER_LABELS
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures"]


def test_demo_split_is_registered_once_and_evaluable(
    database_url: str, serve: Callable[..., Any], classifier_dir: Path, tmp_path: Path
) -> None:
    # A stand-in for the built demo: the tiny classifier where the demo lives, with its held-out split.
    model = demo_dir(tmp_path / "data")
    shutil.copytree(classifier_dir, model)
    rng = random.Random(8)
    split = [
        {"id": f"rt-{i:05d}", "text": rng.choice(SENTENCES), "label": rng.choice(CLASSIFIER_LABELS)} for i in range(30)
    ]
    (model / TEST_SET_FILE).write_text("".join(json.dumps(row) + "\n" for row in split))

    options = {"database_url": database_url, "evaluation_shard_size": 8, "evaluation_poll_s": 0.05}
    with serve(model, **options) as client:
        listed = client.get(f"/v1/test-sets?name={DEMO_TEST_SET}", headers=auth("reader")).json()
        assert listed["total"] == 1
        demo = listed["items"][0]
        assert demo["size"] == 30 and demo["version"] == 1
        assert demo["settings"]["ladder"] is True and demo["settings"]["daily_budget"] == 100
        created = client.post("/v1/evaluations", headers=auth("evaluator"), json={"test_set": DEMO_TEST_SET})
        deadline = time.monotonic() + 60
        while (status := client.get(f"/v1/evaluations/{created.json()['id']}", headers=auth("reader")).json())[
            "status"
        ] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status["status"] == "succeeded" and status["progress"]["done"] == 30
    with serve(model, **options) as client:
        assert client.get(f"/v1/test-sets?name={DEMO_TEST_SET}", headers=auth("reader")).json()["total"] == 1
    with serve(classifier_dir, **options) as client:  # another model: no demo set is added
        assert client.get(f"/v1/test-sets?name={DEMO_TEST_SET}", headers=auth("reader")).json()["total"] == 1
