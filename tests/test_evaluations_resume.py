"""kill -9 in the middle of an evaluation: on restart the job resumes and finishes with every example once.

A real server process (uvicorn, the tiny classifier) runs one evaluation to the end and scores one
submission, then starts a second evaluation and is killed with SIGKILL half-way. A new process on
the same database resumes the second job after the dead process's leases expire. Its predictions
must equal an offline run of the model over the set, in order, none lost and none twice; and the
new process's /metrics carries what the dead one did (scores, totals), restored from the database.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from sklearn.metrics import accuracy_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.db.session import Database
from service.evaluations import job_store
from tests.conftest import auth, env_keys
from tests.fixtures_test_sets import jsonl
from tests.inference_fixtures import CLASSIFIER_LABELS
from tests.live_server import free_port, wait_for
from tests.prometheus_text import sample_value, total
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]

N = 600
LEASE_S = 2


def start(database_url: str, model_dir: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "HELDOUT_DATA_DIR": str(data_dir),
        "HELDOUT_DATABASE_URL": database_url,
        "HELDOUT_API_KEYS": env_keys(),
        "HELDOUT_MODEL_PATH": str(model_dir),
        "HELDOUT_MAX_BATCH_SIZE": "2",
        "HELDOUT_TORCH_THREADS": "1",
        "HELDOUT_METRIC_WORKERS": "1",
        "HELDOUT_SCORING_RESAMPLES": "100",
        "HELDOUT_EVALUATION_SHARD_SIZE": "10",
        "HELDOUT_EVALUATION_LEASE_S": str(LEASE_S),
        "HELDOUT_EVALUATION_POLL_S": "0.2",
        "HELDOUT_LOG_LEVEL": "warning",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/readyz", process)
    except AssertionError:
        process.kill()
        raise
    return process, url


def wait(url: str, evaluation_id: int, until: Any, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(f"{url}/v1/evaluations/{evaluation_id}", headers=auth("reader")).json()
        if until(body):
            return body
        time.sleep(0.02)
    raise AssertionError(f"evaluation {evaluation_id} never reached the expected state")


def offline(model_dir: Path, texts: list[str]) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            out.append(model.config.id2label[int(model(**tokenizer(text, return_tensors="pt")).logits.argmax())])
    return out


def test_kill_9_mid_evaluation_resumes_without_loss_or_double_counting(
    database_url: str, classifier_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(9)
    rows = [
        {"id": f"k{i}", "text": f"{rng.choice(SENTENCES)} {i}", "label": rng.choice(CLASSIFIER_LABELS)}
        for i in range(N)
    ]
    first_rows = rows[:40]
    server, url = start(database_url, classifier_dir, tmp_path / "a")
    try:
        files = {"file": ("a.jsonl", jsonl(first_rows))}
        first_set = httpx.post(
            f"{url}/v1/test-sets",
            headers=auth("admin"),
            data={"name": "before", "task": "classification"},
            files=files,
        ).json()
        httpx.post(
            f"{url}/v1/test-sets/{first_set['id']}/scores",
            headers=auth("evaluator"),
            json={"predictions": {r["id"]: r["label"] for r in first_rows}},
        ).raise_for_status()
        first = httpx.post(f"{url}/v1/evaluations", headers=auth("evaluator"), json={"test_set": "before"}).json()
        first_result = wait(url, first["id"], lambda b: b["status"] == "succeeded")
        big = httpx.post(
            f"{url}/v1/test-sets",
            headers=auth("admin"),
            data={"name": "big", "task": "classification"},
            files={"file": ("b.jsonl", jsonl(rows))},
        ).json()
        job = httpx.post(f"{url}/v1/evaluations", headers=auth("evaluator"), json={"test_set": big["id"]}).json()
        wait(url, job["id"], lambda b: b["progress"]["done"] >= N // 4)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()

    db = Database(database_url)
    killed = job_store.get(db, job["id"])
    assert killed.status == "running" and 0 < killed.done < N, (killed.status, killed.done)
    db.dispose()

    server, url = start(database_url, classifier_dir, tmp_path / "b")
    try:
        restored = httpx.get(f"{url}/metrics").text
        result = wait(url, job["id"], lambda b: b["status"] in ("succeeded", "failed"))
        listed = httpx.get(f"{url}/v1/evaluations?status=succeeded", headers=auth("reader")).json()
    finally:
        server.terminate()
        server.wait(timeout=60)

    assert result["status"] == "succeeded", result["error"]
    assert result["progress"] == {"done": N, "total": N}
    db = Database(database_url)
    predicted = job_store.predictions(db, job["id"])
    db.dispose()
    expected = offline(classifier_dir, [r["text"] for r in rows])
    assert predicted == expected
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy_score([r["label"] for r in rows], expected))
    assert listed["total"] == 2

    # What the killed process did is on the new one's /metrics from the start.
    score_labels = {"model": first_result["model"], "test_set": "before", "metric": "accuracy"}
    assert sample_value(restored, "heldout_evaluation_score", score_labels) == pytest.approx(
        first_result["metrics"]["accuracy"]
    )
    assert sample_value(restored, "heldout_evaluation_score_lower", score_labels) == pytest.approx(
        first_result["intervals"]["accuracy"]["low"]
    )
    assert total(restored, "heldout_evaluations_total", {"status": "succeeded"}) >= 1
    assert total(restored, "heldout_scoring_submissions_total", {"test_set": "before", "outcome": "scored"}) == 1
    assert total(restored, "heldout_evaluation_duration_seconds_count") >= 1
