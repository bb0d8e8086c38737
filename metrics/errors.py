"""The one exception type metric code raises for bad input.

The service turns it into a 422 problem+json naming ``field``; metric code stays free of web types.
"""


class MetricInputError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
