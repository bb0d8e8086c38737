"""The errors domain code raises: plain exceptions that say what went wrong, never how to answer it.

The serving engine, test sets, evaluations and monitoring raise subclasses of these; ``service.errors`` is
the one place that turns them into HTTP answers (by base class), so a domain never knows a status code.
"""

from collections.abc import Sequence
from typing import NamedTuple


class FieldProblem(NamedTuple):
    """One request value at fault and what is wrong with it, for a refusal that names several."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every domain refusal. ``field`` names the request value at fault, where there is one.

    ``problems`` lists the values at fault one by one when there are several (or when what each is told
    differs from the summary in ``message``); without them, ``field`` and ``message`` are the one problem.
    """

    def __init__(self, message: str, *, field: str | None = None, problems: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = tuple(problems)

    @property
    def detail(self) -> str:
        """The whole refusal in one line, as a client or a stored job error reads it."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def field_problems(self) -> tuple[FieldProblem, ...]:
        if self.problems:
            return self.problems
        return (FieldProblem(self.field, self.message),) if self.field else ()


class NotFound(DomainError):
    """What was asked for does not exist (or is not visible, such as a staged test set)."""


class Conflict(DomainError):
    """The request is well formed but does not fit the current state (a generator asked to classify)."""


class Invalid(DomainError):
    """A value in the request cannot be used; ``field`` names it."""


class Busy(DomainError):
    """Too much work is queued or running; trying again after ``retry_after_s`` is likely to succeed."""

    def __init__(self, message: str, *, retry_after_s: int = 1, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    """A dependency the request needs is not there now (no model served, the engine shutting down)."""

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TimedOut(DomainError):
    """The work started but did not finish within its deadline."""
