"""Each forward pass of an explanation runs holding the serving engine's lanes, below every queued request.

captum drives an explanation on a thread of its own and calls the model once per batch of steps or
perturbations. Before each such pass the thread gives back the lanes it held and borrows them again, which
the engine grants only while no prediction or generation is queued. A pass's backward (integrated
gradients) runs before the next pass begins, so it runs under the same hold.

A pass holds one lane, and all explanations together leave at least one lane to predictions and
generations (where the engine has two or more). While none has been submitted for ``QUIET_S``, a pass
runs on every lane's threads, as a lone batch does; otherwise on one lane's.
"""

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from service.explanations.errors import ExplanationAbandoned, ExplanationTimedOut

# How often a thread waiting for a lane looks whether its request was given up.
POLL_S = 0.25
# With no prediction or generation submitted for this long, a pass runs on every lane's threads.
QUIET_S = 0.5


class Lanes(Protocol):
    """What of the engine a pass needs: its lanes, and the intra-op threads that go with them."""

    @property
    def lanes(self) -> int: ...

    @property
    def idle_s(self) -> float: ...

    async def borrow_lanes(self, count: int, reserve: int = 0) -> list[int]: ...

    def return_lanes(self, lanes: Sequence[int]) -> None: ...

    def use_lane_threads(self, lanes: int) -> None: ...


class _Handoff:
    """Lanes borrowed on the event loop for a thread that may have given up by the time they come."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.lanes: list[int] | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class Passes:
    """The lanes of one explanation, held from the start of a pass to the start of the next."""

    def __init__(
        self, engine: Lanes, loop: asyncio.AbstractEventLoop, deadline: float, timeout_s: float
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._held: list[int] = []
        self.abandoned = threading.Event()
        self.count = 0
        self._borrowing: set[asyncio.Task[None]] = set()

    def begin(self, *, exclusive: bool = False) -> None:
        """Called at the start of every forward pass, on the explaining thread; ``exclusive`` waits for every
        lane, so that no batch runs through the model during the pass."""
        self.release()
        every = self._engine.lanes
        count, reserve = (every, 0) if exclusive else (1, min(1, every - 1))
        handoff = _Handoff()
        self._loop.call_soon_threadsafe(self._start_borrowing, count, reserve, handoff)
        while not handoff.ready.wait(POLL_S):
            if self.abandoned.is_set() or time.monotonic() > self._deadline:
                with handoff.lock:
                    handoff.abandoned = True
                    if handoff.lanes is not None:
                        self._give_back(handoff.lanes)
                self._stop()
        if isinstance(handoff.error, TimeoutError):
            self._stop()
        if handoff.error is not None:
            raise handoff.error
        assert handoff.lanes is not None
        self._held = handoff.lanes
        self._engine.use_lane_threads(every if self._engine.idle_s > QUIET_S else len(self._held))
        self.count += 1
        if self.abandoned.is_set() or time.monotonic() > self._deadline:
            self._stop()

    def release(self) -> None:
        if self._held:
            self._give_back(self._held)
            self._held = []

    def _stop(self) -> None:
        self.release()
        if self.abandoned.is_set():
            raise ExplanationAbandoned()
        raise ExplanationTimedOut(
            f"the explanation did not finish within HELDOUT_EXPLAIN_TIMEOUT_S ({self._timeout_s:g} s)"
        )

    def _give_back(self, lanes: list[int]) -> None:
        self._loop.call_soon_threadsafe(self._engine.return_lanes, lanes)

    def _start_borrowing(self, count: int, reserve: int, handoff: _Handoff) -> None:
        task = asyncio.ensure_future(self._borrow(count, reserve, handoff))
        self._borrowing.add(task)
        task.add_done_callback(self._borrowing.discard)

    async def _borrow(self, count: int, reserve: int, handoff: _Handoff) -> None:
        try:
            async with asyncio.timeout(max(0.0, self._deadline - time.monotonic())):
                lanes = await self._engine.borrow_lanes(count, reserve)
        except asyncio.CancelledError:
            handoff.error = ExplanationAbandoned()
            handoff.ready.set()
            raise
        except Exception as exc:  # a refusal (shutting down) or the deadline: the thread raises it
            handoff.error = exc
            handoff.ready.set()
            return
        with handoff.lock:
            if handoff.abandoned:
                self._engine.return_lanes(lanes)
                return
            handoff.lanes = lanes
        handoff.ready.set()
