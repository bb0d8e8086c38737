"""Continuous batching of generation rows: admission to decode sessions, limits and deadlines.

Each lane runs one ``DecodeSession``. A submitted row waits here until a session has room (``capacity``
rows), then joins it at the session's next step and resolves as soon as it is finished, whatever its
neighbours still have to do. Rows go to the session with the most room, so the lanes share the load.
Refusals are the ``DynamicBatcher``'s: a full queue, a deadline passed while queued or while decoding, a
server shutting down.
"""

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from service.inference.batcher import BatchObserver, Closing, QueueFull, QueueTimeout, RunTimeout
from service.inference.decode_session import Admitted, DecodeSession, Done
from service.inference.generator import GenOutput
from service.inference.rows import Row

SessionFactory = Callable[[Done, Admitted], DecodeSession]


@dataclass(eq=False)
class _Entry:
    row: Row
    future: "asyncio.Future[GenOutput]"
    lane: int | None = None
    """The session the row was admitted to; None while it waits here."""


class ContinuousBatcher:
    def __init__(
        self,
        make_session: SessionFactory,
        lanes: Sequence[Executor],
        *,
        capacity: int,
        max_queue: int,
        observer: BatchObserver,
    ) -> None:
        if not lanes:
            raise ValueError("a batcher needs at least one lane")
        self._sessions = [make_session(self._done, self._admitted) for _ in lanes]
        self._lanes = list(lanes)
        self._load = [0] * len(lanes)
        self._capacity = capacity
        self._max_queue = max_queue
        self._observer = observer
        self._waiting: deque[_Entry] = deque()
        self._entries: dict[Row, _Entry] = {}
        self._runs: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._drained = asyncio.Event()

    async def submit(self, rows: Sequence[Row], timeout_s: float) -> list[GenOutput]:
        """Results in row order; raises a ``BatcherRejected`` subclass instead of waiting past ``timeout_s``."""
        if self._closing:
            raise Closing("the server is shutting down")
        if len(self._waiting) + len(rows) > self._max_queue:
            raise QueueFull(f"{len(self._waiting)} examples are queued and HELDOUT_MAX_QUEUE is {self._max_queue}")
        self._loop = asyncio.get_running_loop()
        entries = [_Entry(row, self._loop.create_future()) for row in rows]
        self._entries.update((entry.row, entry) for entry in entries)
        self._waiting.extend(entries)
        self._admit()
        try:
            async with asyncio.timeout(timeout_s):
                return list(await asyncio.gather(*(entry.future for entry in entries)))
        except TimeoutError:
            if any(entry.lane is None for entry in entries):
                raise QueueTimeout(f"still queued after the {timeout_s:g} s request timeout") from None
            raise RunTimeout(f"inference did not finish within the {timeout_s:g} s request timeout") from None
        finally:
            self._withdraw(entries)

    async def aclose(self) -> None:
        """Refuse new work and wait until every queued and admitted row is done."""
        self._closing = True
        if self._waiting or any(self._load):
            await self._drained.wait()

    def _admit(self) -> None:
        """Moves waiting rows to the sessions with the most room, starting those that were idle."""
        offers: dict[int, list[Row]] = {}
        while self._waiting:
            room, lane = max((self._capacity - load, -lane) for lane, load in enumerate(self._load))
            if room <= 0:
                break
            entry = self._waiting.popleft()
            entry.lane = -lane
            self._load[entry.lane] += 1
            offers.setdefault(entry.lane, []).append(entry.row)
        self._observer.queue_depth(len(self._waiting))
        assert self._loop is not None
        for lane, rows in offers.items():
            if self._sessions[lane].offer(rows):
                run = self._loop.run_in_executor(self._lanes[lane], self._sessions[lane].run)
                self._runs.add(run)
                run.add_done_callback(self._runs.discard)

    def _withdraw(self, entries: list[_Entry]) -> None:
        """Rows of a request that gave up: still waiting, they leave the queue; admitted, they stop decoding."""
        for entry in entries:
            entry.row.cancelled = True
            if entry.lane is None and entry in self._waiting:
                self._waiting.remove(entry)
                self._entries.pop(entry.row, None)
        self._observer.queue_depth(len(self._waiting))
        self._signal_if_drained()

    def _done(self, row: Row, result: GenOutput | Exception) -> None:
        """On a session's thread."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._resolve, row, result)

    def _admitted(self, rows: Sequence[Row], started: float, seconds: float) -> None:
        """On a session's thread: an admission is this batcher's batch, its prefill the batch's run."""
        self._observer.batch(len(rows), [max(0.0, started - row.submitted) for row in rows], seconds)

    def _resolve(self, row: Row, result: GenOutput | Exception) -> None:
        entry = self._entries.pop(row, None)
        if entry is None or entry.lane is None:
            return
        self._load[entry.lane] -= 1
        if not entry.future.done():
            if isinstance(result, Exception):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)
        self._admit()
        self._signal_if_drained()

    def _signal_if_drained(self) -> None:
        if self._closing and not self._waiting and not any(self._load):
            self._drained.set()
