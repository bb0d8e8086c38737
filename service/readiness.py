"""Named readiness checks; /readyz is ready only when all pass."""

import logging
from collections.abc import Callable

from sqlalchemy import text

from service.db.session import Database
from service.domain_errors import Unavailable

log = logging.getLogger("heldout.readiness")


class NotReady(Unavailable):
    """A readiness check failed; the message names which."""


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}

    def add(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def run(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                log.warning("readiness check %s failed", name, exc_info=True)
                results[name] = False
        return results

    def verify(self) -> dict[str, bool]:
        """Every check's result, all passing; NotReady names those that failed."""
        results = self.run()
        failed = [name for name, ok in results.items() if not ok]
        if failed:
            raise NotReady(f"not ready: {', '.join(failed)} check failed")
        return results


def database_check(db: Database) -> Callable[[], bool]:
    def check() -> bool:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    return check
