"""Cooperative cancellation: long metric loops call ``checkpoint()`` once per chunk.

The caller installs a plain callable with ``cancellable(check)``; the callable raises (an exception of
the caller's choosing) to stop the computation at the next chunk boundary. A context variable carries
it, so metric code needs no clock, no web types and no extra parameter threaded through every helper.
Work already handed to pool processes finishes its chunk; no new chunk starts.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Check = Callable[[], None]

_CHECK: ContextVar[Check | None] = ContextVar("metrics_check", default=None)


def checkpoint() -> None:
    """Run the installed check, if any: the point where a cancelled computation stops."""
    check = _CHECK.get()
    if check is not None:
        check()


@contextmanager
def cancellable(check: Check) -> Iterator[None]:
    """Run the enclosed computation with ``check`` called at every checkpoint (in this thread)."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)
