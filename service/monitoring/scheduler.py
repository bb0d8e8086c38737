"""Runs a coroutine at every tick of a cron expression, inside the service's event loop.

Ticks are the schedule's nominal times, not the moment a process woke up, so every replica computes
the same tick and the storage layer can let exactly one of them act on it. A tick missed while the
process was busy or down is skipped, not replayed.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from croniter import CroniterError, croniter

log = logging.getLogger("heldout.scheduler")

# asyncio.sleep can wake a little early; a tick is never fired before its time.
WAKE_SLACK_S = 0.001
# The longest gap a satisfiable schedule can have: 29 February, across a century's skipped leap year.
MAX_YEARS_BETWEEN_TICKS = 8


def check_cron(expression: str) -> str:
    """The expression, if croniter accepts it (five fields, or six with seconds last) and it ever fires; else
    ValueError. ``0 0 31 2 *`` parses, but its scheduler would die at its first tick."""
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a cron expression (e.g. '*/30 * * * *')")
    try:
        next_tick(expression, datetime.now(UTC))
    except CroniterError:
        raise ValueError(
            f"{expression!r} never fires (no time matches it within {MAX_YEARS_BETWEEN_TICKS} years)"
        ) from None
    return expression


def next_tick(expression: str, after: datetime) -> datetime:
    """The first tick after ``after``; CroniterError when none comes within the bounded search."""
    schedule = croniter(expression, after, max_years_between_matches=MAX_YEARS_BETWEEN_TICKS)
    return schedule.get_next(datetime)


class CronScheduler:
    def __init__(
        self,
        expression: str,
        fire: Callable[[datetime], Awaitable[None]],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._expression = check_cron(expression)
        self._fire = fire
        self._now = now
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="heldout-cron")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        tick = next_tick(self._expression, self._now())
        while True:
            while (wait := (tick - self._now()).total_seconds()) > 0:
                await asyncio.sleep(wait + WAKE_SLACK_S)
            try:
                await self._fire(tick)
            except Exception:
                log.exception("scheduled run for %s failed", tick.isoformat())
            tick = next_tick(self._expression, max(tick, self._now()))
