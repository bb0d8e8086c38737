"""Bounded work per metrics request: a cap on concurrent computations and a deadline that stops them.

A computation runs in a thread under ``metrics.cancel.cancellable``: its check raises once the
deadline has passed or the client has gone, and the metric loops call it once per chunk, so the work
itself stops, not just the wait for it. Past the deadline the client gets a 503 at once; the slot is
freed only when the thread has really stopped, so abandoned work still counts against the cap.
"""

import asyncio
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from fastapi import FastAPI, Request

from metrics.cancel import cancellable
from service.errors import ProblemError
from service.settings import Settings

T = TypeVar("T")
# How often a waiting request looks for a departed client.
POLL_S = 0.25


class ComputationStopped(Exception):
    """Raised inside a metric computation, at a chunk boundary, to stop it."""


class MetricSlots:
    """At most ``capacity`` computations at once; no queue, so a full house answers 429 immediately."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._deadlines: dict[int, float] = {}
        self._next = 0

    def acquire(self, deadline: float) -> int:
        if len(self._deadlines) >= self.capacity:
            # Every running computation stops by its deadline, so a slot is free by the earliest one.
            wait = min(self._deadlines.values()) - time.monotonic()
            raise ProblemError(
                429,
                f"{self.capacity} metrics computations are already running; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        self._next += 1
        self._deadlines[self._next] = deadline
        return self._next

    def release(self, token: int) -> None:
        self._deadlines.pop(token, None)


def slots(app: FastAPI, settings: Settings) -> MetricSlots:
    """The app's slots, made on first use (the event loop's thread is the only one touching them)."""
    found: MetricSlots | None = getattr(app.state, "metric_slots", None)
    if found is None:
        found = MetricSlots(settings.max_concurrent_metrics)
        app.state.metric_slots = found
    return found


def _deadline_check(stop: threading.Event, deadline: float) -> Callable[[], None]:
    def check() -> None:
        if stop.is_set() or time.monotonic() >= deadline:
            raise ComputationStopped

    return check


def _run(fn: Callable[[], T], check: Callable[[], None]) -> T:
    with cancellable(check):
        return fn()


def _finished(pool: MetricSlots, token: int, future: "asyncio.Future[Any]") -> None:
    """Frees the slot once the thread is done, and reads its outcome so a stopped run logs nothing."""
    pool.release(token)
    if not future.cancelled():
        future.exception()


def _timeout(settings: Settings) -> ProblemError:
    return ProblemError(
        503,
        f"the computation passed HELDOUT_METRICS_TIMEOUT_S ({settings.metrics_timeout_s:g} s) and was stopped; "
        "send fewer segments or resamples",
        headers={"Retry-After": "1"},
    )


async def run_metric(request: Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread, within the concurrency cap and the deadline."""
    settings: Settings = request.app.state.settings
    deadline = time.monotonic() + settings.metrics_timeout_s
    pool = slots(request.app, settings)
    token = pool.acquire(deadline)
    stop = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(
        None, _run, partial(fn, *args, **kwargs), _deadline_check(stop, deadline)
    )
    future.add_done_callback(partial(_finished, pool, token))
    try:
        while not future.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(settings)
            await asyncio.wait({future}, timeout=min(POLL_S, remaining))
            if not future.done() and await request.is_disconnected():
                raise ProblemError(400, "the client disconnected; the computation was stopped")
        try:
            return future.result()
        except ComputationStopped:
            raise _timeout(settings) from None
    finally:
        if not future.done():
            stop.set()
