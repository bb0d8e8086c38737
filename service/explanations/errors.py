"""What an explanation request is refused for, in domain terms; ``service.errors`` answers them over HTTP."""

from collections.abc import Sequence

from service.domain_errors import Busy, Invalid, TimedOut
from service.explanations.options import Method


class TooManyInputs(Invalid):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} inputs exceed HELDOUT_EXPLAIN_MAX_INPUTS ({limit})", field="inputs")


class OverCap(Invalid):
    """``n_steps`` or ``n_samples`` above its setting."""

    def __init__(self, field: str, value: int, setting: str, limit: int) -> None:
        super().__init__(f"{value} exceeds {setting} ({limit})", field=field)


class MethodNotApplicable(Invalid):
    """A method that does not explain this kind of model (attention, LIME or SHAP on a generator)."""

    def __init__(self, method: Method, task: str, applicable: Sequence[Method]) -> None:
        usable = ", ".join(applicable) if applicable else "none"
        super().__init__(
            f"{method} does not apply to a {task} model; methods that do: {usable}", field="method"
        )


class UnknownTarget(Invalid):
    def __init__(self, target: str, labels: Sequence[str]) -> None:
        super().__init__(f"{target!r} is not one of the model's labels: {', '.join(labels)}", field="target")


class TargetNotAllowed(Invalid):
    """A field that applies to the other kind of model (a continuation for a classifier)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class NothingToAttribute(Invalid):
    """An input that tokenizes to no token but special ones."""

    def __init__(self, index: int) -> None:
        super().__init__("has no tokens to attribute (only whitespace?)", field=f"inputs.{index}")


class NothingToExplain(Invalid):
    """A causal LM whose continuation of an input is empty (it ended at once), or too long to fit beside it."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason, field=f"inputs.{index}")


class ExplanationsBusy(Busy):
    """HELDOUT_EXPLAIN_MAX_QUEUE explanation requests are already running or waiting for a lane."""


class ExplanationTimedOut(TimedOut):
    """HELDOUT_EXPLAIN_TIMEOUT_S passed before the explanation was done; its remaining passes were not run."""


class ExplanationAbandoned(Exception):
    """The request gave up (client gone); raised on the explaining thread to stop its passes."""
