"""The job engine below HTTP: atomic shard claims, lease expiry and takeover, retries, and several replicas
sharing one job's shards, with a tiny real model, on SQLite and PostgreSQL."""

import asyncio
import random
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sqlalchemy import select
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.db.models import Evaluation, EvaluationShard
from service.db.session import Database
from service.evaluations import job_store
from service.evaluations.evaluation_worker import EvaluationWorker
from service.evaluations.runner import EngineRunner, Transient
from service.inference.startup import build_engine
from service.settings import Settings
from service.tasks import Task
from tests.fixtures_test_sets import stored_set
from tests.inference_fixtures import CLASSIFIER_LABELS
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]

MODEL = job_store.ModelIdentity("m", "v1", Task.classification, False)


def rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"id": f"r{i}", "text": f"{rng.choice(SENTENCES)} {i}", "label": rng.choice(CLASSIFIER_LABELS)}
        for i in range(n)
    ]


def new_job(
    db: Database, n: int, shard_size: int, model: job_store.ModelIdentity = MODEL, name: str = "s"
) -> Evaluation:
    test_set = stored_set(db, rows(n), name=name)
    return job_store.create(
        db,
        test_set,
        model,
        metrics=["accuracy", "f1"],
        extra_metrics=[],
        options={},
        shard_size=shard_size,
        created_by="test",
    )


def shards(db: Database, evaluation_id: int) -> list[EvaluationShard]:
    with db.session() as session:
        return list(
            session.scalars(
                select(EvaluationShard)
                .where(EvaluationShard.evaluation_id == evaluation_id)
                .order_by(EvaluationShard.idx)
            )
        )


def test_concurrent_claims_never_share_a_shard(database: Database, database_url: str) -> None:
    job = new_job(database, 40, 5)
    claimed: list[job_store.ClaimedShard | None] = []
    lock = threading.Lock()

    def claimer(i: int) -> None:
        db = Database(database_url)  # each thread is its own replica with its own connections
        for _ in range(3):
            shard = job_store.claim(db, f"owner-{i}", MODEL, timedelta(seconds=60))
            with lock:
                claimed.append(shard)
        db.dispose()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = [c.idx for c in claimed if c is not None]
    assert sorted(got) == list(range(8)) and claimed.count(None) == 18 - 8
    assert job_store.get(database, job.id).status == "running"


def test_expired_lease_is_taken_over_and_counted_once(database: Database) -> None:
    job = new_job(database, 6, 3)
    lease = timedelta(seconds=1)
    first = job_store.claim(database, "a", MODEL, lease)
    assert first is not None and first.idx == 0
    second = job_store.claim(database, "b", MODEL, lease)
    assert second is not None and second.idx == 1
    assert job_store.claim(database, "c", MODEL, lease) is None
    assert job_store.renew(database, first.id, "a", lease)
    time.sleep(1.2)
    taken = job_store.claim(database, "c", MODEL, lease)
    assert taken is not None and taken.idx == 0 and taken.attempts == 2
    assert not job_store.renew(database, first.id, "a", lease)
    assert not job_store.complete(database, first, "a", ["x"] * 3)
    assert job_store.complete(database, taken, "c", ["neutral"] * 3)
    assert not job_store.complete(database, taken, "c", ["neutral"] * 3)
    assert job_store.get(database, job.id).done == 3
    assert job_store.claim_reduce(database, "c", lease) is None  # shard 1 is not done yet


def test_other_model_versions_do_not_claim(database: Database) -> None:
    new_job(database, 4, 2)
    other = job_store.ModelIdentity("m", "v2", Task.classification, False)
    assert job_store.claim(database, "x", other, timedelta(seconds=5)) is None


class Flaky:
    """A runner failing its first ``failures`` calls (or always), then echoing a fixed label."""

    def __init__(self, failures: int, transient: bool = False) -> None:
        self.failures = failures
        self.transient = transient
        self.calls = 0

    @property
    def identity(self) -> job_store.ModelIdentity:
        return MODEL

    async def run(self, texts: Sequence[str], options: dict[str, Any]) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise Transient("busy", 0.01) if self.transient else RuntimeError("boom")
        return ["neutral"] * len(texts)


def run_until_finished(db: Database, workers: list[EvaluationWorker], evaluation_id: int, seconds: float = 60) -> None:
    async def scenario() -> None:
        for worker in workers:
            worker.start(lanes=1)
        deadline = time.monotonic() + seconds
        while job_store.get(db, evaluation_id).status not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the job did not finish"
            await asyncio.sleep(0.05)
        for worker in workers:
            await worker.aclose()

    asyncio.run(scenario())


def worker(db: Database, runner: Any, owner: str, lease_s: float = 5, max_attempts: int = 3) -> EvaluationWorker:
    return EvaluationWorker(
        db,
        runner,
        lease_s=lease_s,
        poll_s=0.05,
        max_attempts=max_attempts,
        n_resamples=50,
        metric_workers=1,
        owner=owner,
        retry_backoff_s=0.01,
    )


def test_failures_are_retried_then_fail_the_job(database: Database) -> None:
    job = new_job(database, 4, 4)
    run_until_finished(database, [worker(database, Flaky(2), "w", max_attempts=3)], job.id)
    assert job_store.get(database, job.id).status == "succeeded"
    assert shards(database, job.id)[0].attempts == 3

    job = new_job(database, 4, 4, name="t")
    run_until_finished(database, [worker(database, Flaky(10**6), "w", max_attempts=2)], job.id)
    failed = job_store.get(database, job.id)
    assert failed.status == "failed" and failed.error == "shard 0 failed 2 times; last error: RuntimeError: boom"


def test_busy_model_retries_do_not_count(database: Database) -> None:
    job = new_job(database, 4, 4)
    run_until_finished(database, [worker(database, Flaky(5, transient=True), "w", max_attempts=1)], job.id)
    assert job_store.get(database, job.id).status == "succeeded"
    assert shards(database, job.id)[0].attempts == 1


@pytest.fixture
def offline_labels(classifier_dir: Path) -> Any:
    """The tiny classifier run directly with transformers, one example at a time: the oracle."""
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()

    def predict(texts: list[str]) -> list[str]:
        out = []
        with torch.inference_mode():
            for text in texts:
                logits = model(**tokenizer(text, return_tensors="pt", truncation=True)).logits
                out.append(model.config.id2label[int(logits.argmax())])
        return out

    return predict


@pytest.fixture
def engine_runner(classifier_dir: Path, make_settings: Any, database: Database) -> Iterator[Any]:
    settings: Settings = make_settings(model_path=classifier_dir, max_batch_size=4)

    def make() -> EngineRunner:
        return EngineRunner(build_engine(settings, database), settings.max_inputs)

    yield make


def test_replicas_share_one_job_and_a_dead_replicas_shard_is_taken_over(
    database: Database, database_url: str, engine_runner: Any, offline_labels: Any
) -> None:
    data = rows(120, seed=1)
    test_set = stored_set(database, data)

    async def scenario() -> tuple[int, list[str]]:
        runner = engine_runner()
        await runner._engine.start()
        identity = runner.identity
        job = job_store.create(
            database,
            test_set,
            identity,
            metrics=["accuracy", "precision", "recall", "f1"],
            extra_metrics=[],
            options={},
            shard_size=8,
            created_by="test",
        )
        # A replica that died holding shard 0: its lease runs out and someone else must take it.
        dead = job_store.claim(database, "dead-replica", identity, timedelta(seconds=1))
        assert dead is not None and dead.idx == 0
        replicas = [Database(database_url) for _ in range(3)]
        workers = [worker(db, runner, f"replica-{i}", lease_s=10) for i, db in enumerate(replicas)]
        for w in workers:
            w.start(lanes=1)
        deadline = time.monotonic() + 90
        while job_store.get(database, job.id).status not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for w in workers:
            await w.aclose()
        await runner._engine.aclose()
        for db in replicas:
            db.dispose()
        return job.id, [w.owner for w in workers]

    evaluation_id, owners = asyncio.run(scenario())
    job = job_store.get(database, evaluation_id)
    assert job.status == "succeeded", job.error
    assert (job.done, job.total) == (120, 120)
    done = shards(database, evaluation_id)
    completers = {s.lease_owner for s in done}
    assert completers <= set(owners) and len(completers) >= 2, completers
    assert done[0].attempts == 2 and all(s.attempts == 1 for s in done[1:])
    assert all(len(s.output or []) == s.stop - s.start for s in done)

    predicted = offline_labels([r["text"] for r in data])
    assert job_store.predictions(database, evaluation_id) == predicted
    truth = [r["label"] for r in data]
    p, r, f, _ = precision_recall_fscore_support(
        truth, predicted, average="macro", labels=sorted(set(truth)), zero_division=0
    )
    expected = {"accuracy": accuracy_score(truth, predicted), "precision": p, "recall": r, "f1": f}
    assert job.result is not None and job.result["metrics"] == pytest.approx(expected, abs=1e-12)
