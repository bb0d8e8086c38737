"""What test-set storage and scoring refuse, in domain terms; ``service.errors`` answers them over HTTP."""

from service.domain_errors import Busy, FieldProblem, Invalid, NotFound, Unavailable

# Upload problems shown in the one-line summary before the rest are counted.
SHOWN_UPLOAD_PROBLEMS = 3


class TestSetNotFound(NotFound):
    """No published, undeleted test set has that id or name (a staged upload is invisible)."""


class UploadInvalid(Invalid):
    """An upload failed validation; ``lines`` are ``(line, message)`` pairs with no record content in them."""

    def __init__(self, field_name: str, lines: list[tuple[int | None, str]]) -> None:
        self.lines = lines
        messages = self.messages()
        more = len(messages) - SHOWN_UPLOAD_PROBLEMS
        shown = "; ".join(messages[:SHOWN_UPLOAD_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        super().__init__(shown, field=field_name, problems=[FieldProblem(field_name, m) for m in messages])

    def messages(self) -> list[str]:
        return [message if line is None else f"line {line}: {message}" for line, message in self.lines]


class UploadNotStored(Unavailable):
    """The upload stalled or the database refused it; nothing was stored and a retry may succeed."""


class PredictionsInvalid(Invalid):
    """Submitted predictions do not fit the set: ids missing or unknown, or values of the wrong shape."""


class BudgetExhausted(Busy):
    """The key spent its daily scoring budget for the set; it renews at 00:00 UTC."""
