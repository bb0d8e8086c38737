"""The explanation series for one served model; ``method`` takes the five method names only."""

from monitors import instruments


class ExplanationMetrics:
    def __init__(self, model: str) -> None:
        self._model = model

    def explained(self, method: str, count: int, seconds: float) -> None:
        """One answered /v1/explain request: ``count`` explanations in ``seconds``."""
        instruments.explanations_total.labels(self._model, method).inc(count)
        instruments.explanation_duration_seconds.labels(self._model, method).observe(seconds)
