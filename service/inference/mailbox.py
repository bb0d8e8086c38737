"""A stream's hand-off of decoded text from its lane's thread to the event loop, paced."""

import asyncio
import threading

from service.inference.rows import Delta


def _resolve(future: "asyncio.Future[None] | None") -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Mailbox:
    """Deltas posted by a decoding thread and taken by the event loop in bulk.

    A take returns every delta waiting, those of one choice joined: a slow reader gets fewer, larger chunks
    instead of an event per token. After a take, the next waits until ``interval_s`` has passed (or the
    mailbox closes), so a stream sends at most one event per interval however fast its tokens come.

    The decoding thread wakes the loop only when a take is waiting for the first delta, not while it
    pauses: a wake-up from another thread costs both threads the GIL and a system call, and most steps
    come during a pause.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self._interval = interval_s
        self._lock = threading.Lock()
        self._deltas: list[Delta] = []
        self._waiting = False
        """Under the lock: a take awaits ``_posted``, and the next put must wake it."""
        self._posted: asyncio.Future[None] | None = None
        self._pause: asyncio.Future[None] | None = None
        self._closed = False
        self._next_take = 0.0

    def put(self, deltas: list[Delta]) -> None:
        """On the decoding thread."""
        with self._lock:
            self._deltas.extend(deltas)
            waiting = self._posted if self._waiting else None
            self._waiting = False
        if waiting is not None:
            self._loop.call_soon_threadsafe(_resolve, waiting)

    def close(self) -> None:
        """On the loop, once nothing more will be put: a take pausing or waiting returns at once."""
        self._closed = True
        _resolve(self._pause)
        _resolve(self._posted)

    async def take(self) -> list[Delta] | None:
        """Every waiting delta, those of one choice joined; None once closed and empty."""
        pause = self._next_take - self._loop.time()
        if pause > 0 and not self._closed:
            self._pause = self._loop.create_future()
            timer = self._loop.call_later(pause, _resolve, self._pause)
            try:
                await self._pause
            finally:
                timer.cancel()
        while True:
            with self._lock:
                deltas, self._deltas = self._deltas, []
                if not deltas and not self._closed:
                    self._posted = self._loop.create_future()
                    self._waiting = True
            if deltas:
                self._next_take = self._loop.time() + self._interval
                texts: dict[int, str] = {}
                for delta in deltas:
                    texts[delta.index] = texts.get(delta.index, "") + delta.text
                return [Delta(index, text) for index, text in texts.items()]
            if self._closed:
                return None
            assert self._posted is not None
            await self._posted
