"""The evaluation worker: one asyncio task per process, claiming shards, running them, reducing jobs.

While a shard runs, a heartbeat renews its lease every third of the lease; if a renewal finds the
lease taken over, the run is cancelled and its predictions are dropped. On shutdown the shard in
hand is given back at once, so a restarted process (or another replica) resumes it without waiting
for the lease to run out; after kill -9 it is resumed once the lease expires.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from monitors.evaluation_gauges import count_evaluation, publish_scores
from service.db.models import TestSet
from service.db.session import Database
from service.evaluations import job_store, results
from service.evaluations.runner import Runner, Transient
from service.evaluations.telemetry import duration_s, refresh_gauges, score_series
from service.test_sets.store import load_inputs

log = logging.getLogger("heldout.evaluations")
# How often a worker reloads the score gauges, which other replicas' jobs may have changed.
GAUGE_REFRESH_S = 30.0
# Shards in flight per process: while one shard's results commit and the next is claimed, the
# other keeps the batcher fed, so the model never waits on the database.
LANES = 2


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class EvaluationWorker:
    def __init__(
        self,
        db: Database,
        runner: Runner,
        *,
        lease_s: float,
        poll_s: float,
        max_attempts: int,
        n_resamples: int,
        metric_workers: int | None,
        owner: str | None = None,
        retry_backoff_s: float = 1.0,
        min_slice_size: int = 30,
        overfitting_gap: float = 0.05,
    ) -> None:
        self.db = db
        self.runner = runner
        self.owner = owner or worker_id()
        self.lease = timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.n_resamples = n_resamples
        self.metric_workers = metric_workers
        self.reduce_options = results.ReduceOptions(n_resamples, metric_workers, min_slice_size, overfitting_gap)
        self.retry_backoff_s = retry_backoff_s
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._refreshed = time.monotonic()

    def start(self, lanes: int = LANES) -> None:
        loop = self._event_loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(), name=f"heldout-evaluations-{self.owner}-{i}") for i in range(lanes)
        ]

    def wake(self) -> None:
        """Safe from any thread or event loop (a request may be served on another loop than the worker's)."""
        if self._event_loop is not None and not self._event_loop.is_closed():
            self._event_loop.call_soon_threadsafe(self._wake.set)

    async def aclose(self) -> None:
        loop = self._event_loop
        if loop is None or loop.is_closed():
            return
        if loop is not asyncio.get_running_loop():
            for task in self._tasks:
                loop.call_soon_threadsafe(task.cancel)
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                worked = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("evaluation worker %s: step failed; retrying", self.owner)
                worked = False
            if time.monotonic() - self._refreshed > GAUGE_REFRESH_S:
                self._refreshed = time.monotonic()
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(refresh_gauges, self.db)
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await self._wake.wait()

    async def step(self) -> bool:
        """Reduce a finished job or run one shard; False when there was nothing to do."""
        job_id = await asyncio.to_thread(job_store.claim_reduce, self.db, self.owner, self.lease)
        if job_id is not None:
            await self._reduce(job_id)
            return True
        shard = await asyncio.to_thread(job_store.claim, self.db, self.owner, self.runner.identity, self.lease)
        if shard is None:
            return False
        await self._run(shard)
        return True

    async def _heartbeat(self, shard: job_store.ClaimedShard, run: "asyncio.Task[list[object]]") -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                held = await asyncio.to_thread(job_store.renew, self.db, shard.id, self.owner, self.lease)
            except Exception as exc:  # a busy database: try again at the next beat, the lease has slack
                log.warning("evaluation %s: could not renew a lease (%s)", shard.evaluation_id, type(exc).__name__)
                continue
            if not held:
                log.warning("evaluation %s: lost the lease on shard %s", shard.evaluation_id, shard.idx)
                run.cancel()
                return

    async def _run(self, shard: job_store.ClaimedShard) -> None:
        texts = await asyncio.to_thread(load_inputs, self.db, shard.test_set_id, shard.start, shard.stop)
        if len(texts) != shard.stop - shard.start:
            await self._release(shard, "the test set's records are gone (deleted?)")
            return
        run = asyncio.ensure_future(self.runner.run(texts, shard.options))
        heartbeat = asyncio.ensure_future(self._heartbeat(shard, run))
        try:
            output = await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                return  # the heartbeat cancelled the run: the lease is lost and the shard is someone else's
            await asyncio.shield(asyncio.to_thread(self._give_back, shard, timedelta(0)))
            raise
        except Transient as exc:
            await asyncio.to_thread(self._give_back, shard, timedelta(seconds=min(exc.retry_after_s, 30.0)))
            return
        except Exception as exc:
            log.warning("evaluation %s: shard %s failed: %s", shard.evaluation_id, shard.idx, type(exc).__name__)
            await self._release(shard, f"{type(exc).__name__}: {exc}"[:1000])
            return
        finally:
            heartbeat.cancel()
        if not await asyncio.to_thread(job_store.complete, self.db, shard, self.owner, output):
            log.warning(
                "evaluation %s: shard %s finished after its lease was taken over", shard.evaluation_id, shard.idx
            )

    def _give_back(self, shard: job_store.ClaimedShard, retry_in: timedelta) -> None:
        job_store.release(self.db, shard, self.owner, None, self.max_attempts, count_attempt=False, retry_in=retry_in)

    async def _release(self, shard: job_store.ClaimedShard, error: str) -> None:
        backoff = timedelta(seconds=min(60.0, self.retry_backoff_s * 2 ** (shard.attempts - 1)))
        if await asyncio.to_thread(
            lambda: job_store.release(self.db, shard, self.owner, error, self.max_attempts, retry_in=backoff)
        ):
            count_evaluation("failed", None)

    async def _reduce(self, job_id: int) -> None:
        job = await asyncio.to_thread(job_store.get, self.db, job_id)

        def compute() -> tuple[dict[str, object] | None, str | None]:
            with self.db.session() as session:
                test_set = session.get(TestSet, job.test_set_id)
            return results.reduce(self.db, job, test_set, self.reduce_options)

        result, error = await asyncio.to_thread(compute)
        finished = await asyncio.to_thread(job_store.finish, self.db, job_id, self.owner, result, error)
        if finished is None:
            return
        assert finished.finished_at is not None
        count_evaluation(finished.status, duration_s(finished.started_at, finished.created_at, finished.finished_at))
        if finished.status == "succeeded" and finished.result:
            publish_scores(
                score_series(finished.model, finished.model_version, finished.test_set_name, finished.result)
            )
