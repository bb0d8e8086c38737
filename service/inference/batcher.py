"""Dynamic batching: concurrent requests' examples merge into forward passes, run off the event loop.

Modelled on Seldon MLServer's adaptive batcher. One task on the event loop forms batches: it waits until
``max_batch_size`` examples of one key (requests that can share a forward pass) are queued, or until the
oldest has waited ``max_delay_s``, whichever is first. Time the workers spend busy counts towards that
wait, so under load batches leave full as soon as a worker frees up, and with a zero delay a lone
request on an idle worker runs at once. The batch is the oldest example plus the queued examples closest
to it in length, so padding stays small and no example starves. The queue is bounded; past the bound, or
once closing, submissions are refused rather than slowed.

Each executor is a lane, and up to one batch per lane runs at once. A batch that finds every lane free
and leaves nothing queued behind it takes them all and runs on the first; ``run_batch`` learns how many
lanes it holds. On a CPU a lone batch can then use all cores for low latency, while under load each
batch gets one lane's share and batches overlap, which wastes less time in the synchronisation of
intra-op threads. Only the first lane ever runs wide, so no other lane keeps idle intra-op threads
spinning beside it. Without ``wide``, a lone batch keeps to one lane and the next request starts on
another at once. A key for which ``exclusive`` is true always runs alone.

Work of lower priority than any queued example (explanations' forward and backward passes) borrows lanes
with ``borrow``: it gets them only while nothing is queued, and a borrowed lane is busy to the batches
until it is handed back with ``give_back``. The borrower computes on its own thread; the lanes it holds
bound how many passes run at once, as they do for batches.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# How far past the oldest example the batcher looks for similar lengths, in batches.
LOOKAHEAD_BATCHES = 8
# Smoothing of the per-example run time behind Retry-After.
RATE_SMOOTHING = 0.2


class BatcherRejected(Exception):
    """Base of every refusal; ``retry_after_s`` is when trying again is likely to succeed."""

    reason = "rejected"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(BatcherRejected):
    reason = "queue_full"


class QueueTimeout(BatcherRejected):
    """The deadline passed while some examples were still queued; they were withdrawn unrun."""

    reason = "queue_timeout"


class RunTimeout(BatcherRejected):
    """The deadline passed while the examples were being computed."""

    reason = "run_timeout"


class Closing(BatcherRejected):
    reason = "shutting_down"


class BatchObserver(Protocol):
    def queue_depth(self, depth: int) -> None: ...

    def batch(self, size: int, queued_s: Sequence[float], run_s: float) -> None: ...


class _NoObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def batch(self, size: int, queued_s: Sequence[float], run_s: float) -> None:
        pass


@dataclass(eq=False)
class _Entry(Generic[T, R]):
    item: T
    key: Hashable
    length: int
    order: int
    enqueued: float
    future: "asyncio.Future[R]"
    state: str = field(default="queued")  # queued → running → done, or queued → withdrawn


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T], Hashable, int], Sequence[R]],
        lanes: Sequence[Executor],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        length: Callable[[T], int] = lambda _: 0,
        exclusive: Callable[[Hashable], bool] = lambda _: False,
        wide: bool = True,
        observer: BatchObserver | None = None,
    ) -> None:
        """``run_batch(items, key, lanes_held)`` runs on the executor of the batch's lowest lane."""
        if not lanes:
            raise ValueError("a batcher needs at least one lane")
        self._run_batch = run_batch
        self._executors = list(lanes)
        self._lanes = len(self._executors)
        self._free = list(range(self._lanes))
        self._freed = asyncio.Event()
        self._exclusive = exclusive
        self._wide = wide
        self._runs: set[asyncio.Task[None]] = set()
        self._max_batch = max_batch_size
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._length = length
        self._observer = observer or _NoObserver()
        self._queues: dict[Hashable, deque[_Entry[T, R]]] = {}
        self._live: dict[Hashable, int] = {}
        self._depth = 0
        self._order = 0
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self._lendable = asyncio.Event()
        self._seconds_per_example = 0.0
        self._last_submit = time.monotonic()
        self._borrowed = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self._depth

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._form_batches(), name="heldout-batcher")

    async def submit(self, items: Sequence[T], key: Hashable, timeout_s: float) -> list[R]:
        """Results in item order; raises a BatcherRejected subclass instead of waiting past ``timeout_s``."""
        if self._closing:
            raise Closing("the server is shutting down", self._retry_after())
        if self._depth + len(items) > self._max_queue:
            raise QueueFull(
                f"{self._depth} examples are queued and HELDOUT_MAX_QUEUE is {self._max_queue}", self._retry_after()
            )
        loop = asyncio.get_running_loop()
        now = self._last_submit = time.monotonic()
        entries = [
            _Entry(item, key, self._length(item), self._next_order(), now, loop.create_future()) for item in items
        ]
        self._queues.setdefault(key, deque()).extend(entries)
        self._live[key] = self._live.get(key, 0) + len(entries)
        self._set_depth(self._depth + len(entries))
        self._arrived.set()
        try:
            async with asyncio.timeout(timeout_s):
                return list(await asyncio.gather(*(entry.future for entry in entries)))
        except TimeoutError:
            if any(entry.state == "queued" for entry in entries):
                raise QueueTimeout(
                    f"still queued after the {timeout_s:g} s request timeout", self._retry_after()
                ) from None
            raise RunTimeout(f"inference did not finish within the {timeout_s:g} s request timeout") from None
        finally:
            self._withdraw(entries)

    async def aclose(self) -> None:
        """Refuse new work, finish everything queued or running, then stop."""
        self._closing = True
        self._arrived.set()
        self._lendable.set()
        if self._depth or self._busy:
            await self._drained.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def idle_s(self) -> float:
        """Seconds since the last submission."""
        return time.monotonic() - self._last_submit

    async def borrow(self, count: int, reserve: int = 0) -> list[int]:
        """``count`` lanes, taken once nothing is queued, ``count`` are free, and borrowers would still leave
        ``reserve`` lanes to batches; queued examples always go first. Raises ``Closing`` once the batcher
        is closing. Cancelling the wait borrows nothing."""
        if not 1 <= count <= self._lanes - reserve:
            raise ValueError(f"can borrow 1 to {self._lanes - reserve} lanes, not {count}")
        while True:
            if self._closing:
                raise Closing("the server is shutting down", self._retry_after())
            lendable = self._borrowed + count <= self._lanes - reserve
            if not self._depth and len(self._free) >= count and lendable:
                lanes = sorted(self._free)[-count:]
                self._free = [lane for lane in self._free if lane not in lanes]
                self._borrowed += count
                return lanes
            self._lendable.clear()
            await self._lendable.wait()

    def give_back(self, lanes: Sequence[int]) -> None:
        """Return borrowed lanes, on the event loop."""
        self._borrowed -= len(lanes)
        self._free.extend(lanes)
        self._freed.set()
        self._lendable.set()
        self._signal_if_drained()

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        self._observer.queue_depth(depth)
        if not depth:
            self._lendable.set()

    def _retry_after(self) -> int:
        return max(1, min(60, math.ceil(self._max_delay + self._depth * self._seconds_per_example / self._lanes)))

    def _withdraw(self, entries: list[_Entry[T, R]]) -> None:
        """Examples of a request that gave up leave the queue; the batch loop skips them lazily."""
        withdrawn = 0
        for entry in entries:
            if entry.state == "queued":
                entry.state = "withdrawn"
                entry.future.cancel()
                self._live[entry.key] -= 1
                withdrawn += 1
        if withdrawn:
            self._set_depth(self._depth - withdrawn)
            self._signal_if_drained()

    def _signal_if_drained(self) -> None:
        if self._closing and not self._depth and not self._busy:
            self._drained.set()

    def _oldest(self) -> tuple[int, Hashable] | None:
        """(order, key) of the oldest queued example; keys themselves may be None."""
        best: tuple[int, Hashable] | None = None
        for key, queue in list(self._queues.items()):
            while queue and queue[0].state != "queued":
                queue.popleft()
            if not queue:
                del self._queues[key]
                self._live.pop(key, None)
                continue
            if best is None or queue[0].order < best[0]:
                best = (queue[0].order, key)
        return best

    async def _form_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._lanes_free(1)
            oldest = self._oldest()
            if oldest is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            key = oldest[1]
            exclusive = self._exclusive(key)
            if exclusive and self._busy:
                await self._lanes_free(self._lanes)
                continue
            await self._fill(key)
            if len(self._free) < (self._lanes if exclusive else 1):  # a borrower took lanes while it filled
                continue
            batch = self._take(key)
            if not batch:
                continue
            alone = exclusive or (self._wide and not (self._depth or self._busy))
            held = list(range(self._lanes)) if alone else [min(self._free)]
            self._free = [lane for lane in self._free if lane not in held]
            run = loop.create_task(self._run(loop, key, batch, held))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    @property
    def _busy(self) -> int:
        return self._lanes - len(self._free)

    async def _lanes_free(self, count: int) -> None:
        while len(self._free) < count:
            self._freed.clear()
            await self._freed.wait()

    async def _fill(self, key: Hashable) -> None:
        deadline = self._queues[key][0].enqueued + self._max_delay
        while not self._closing and self._live.get(key, 0) < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return

    def _take(self, key: Hashable) -> list[_Entry[T, R]]:
        queue = self._queues.get(key)
        if not queue:
            return []
        window: list[_Entry[T, R]] = []
        while queue and len(window) < self._max_batch * LOOKAHEAD_BATCHES:
            entry = queue.popleft()
            if entry.state == "queued":
                window.append(entry)
        if not window:
            return []
        oldest = window[0]
        by_closeness = sorted(window, key=lambda e: (abs(e.length - oldest.length), e.order))
        chosen = by_closeness[: self._max_batch]
        chosen_set = set(map(id, chosen))
        queue.extendleft(reversed([e for e in window if id(e) not in chosen_set]))
        for entry in chosen:
            entry.state = "running"
        self._live[key] -= len(chosen)
        self._set_depth(self._depth - len(chosen))
        return sorted(chosen, key=lambda e: e.length)

    async def _run(
        self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[_Entry[T, R]], held: list[int]
    ) -> None:
        started = time.monotonic()
        queued_s = [started - entry.enqueued for entry in batch]
        try:
            items = [e.item for e in batch]
            executor = self._executors[held[0]]
            results = await loop.run_in_executor(executor, self._run_batch, items, key, len(held))
        except Exception as exc:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
        else:
            for entry, result in zip(batch, results, strict=True):
                if not entry.future.done():
                    entry.future.set_result(result)
        finally:
            run_s = time.monotonic() - started
            self._seconds_per_example += RATE_SMOOTHING * (run_s / len(batch) - self._seconds_per_example)
            for entry in batch:
                entry.state = "done"
            self._free.extend(held)
            self._freed.set()
            self._lendable.set()
            self._observer.batch(len(batch), queued_s, run_s)
            self._signal_if_drained()
