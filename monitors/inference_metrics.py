"""The inference series for one served model, with label values bound once and kept bounded."""

from collections.abc import Iterable, Sequence

from monitors import instruments

# Past this many classes a label series per class costs more than it tells.
MAX_LABEL_SERIES = 50
NO_LABEL = "<none>"


class InferenceMetrics:
    def __init__(self, model: str, labels: Sequence[str]) -> None:
        self._model = model
        self._label_values = set(labels) if len(labels) <= MAX_LABEL_SERIES else set()
        self._request = instruments.inference_request_duration_seconds.labels(model)
        self._queue = instruments.inference_queue_duration_seconds.labels(model)
        self._batch = instruments.inference_batch_duration_seconds.labels(model)
        self._batch_size = instruments.inference_batch_size.labels(model)
        self._depth = instruments.inference_queue_depth.labels(model)
        self._tokens = instruments.generated_tokens_total.labels(model)
        self._depth.set(0)

    def describe(self, version: str, task: str, device: str, dtype: str) -> None:
        instruments.model_info.labels(self._model, version, task, device, dtype).set(1)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def batch(self, size: int, queued_s: Sequence[float], run_s: float) -> None:
        self._batch.observe(run_s)
        self._batch_size.observe(size)
        for seconds in queued_s:
            self._queue.observe(seconds)

    def request(self, seconds: float) -> None:
        self._request.observe(seconds)

    def rejected(self, reason: str) -> None:
        instruments.inference_rejected_total.labels(self._model, reason).inc()

    def predicted(self, labels: Iterable[str | list[str]]) -> None:
        """One count per prediction; a multi-label prediction counts once per label it names."""
        counts: dict[str, int] = {}
        for label in labels:
            for value in label if isinstance(label, list) else [label]:
                key = value if value in self._label_values else ""
                counts[key] = counts.get(key, 0) + 1
            if isinstance(label, list) and not label:
                counts[NO_LABEL] = counts.get(NO_LABEL, 0) + 1
        for key, count in counts.items():
            instruments.predictions_total.labels(self._model, key).inc(count)

    def generated(self, count: int, tokens: int) -> None:
        instruments.predictions_total.labels(self._model, "").inc(count)
        self._tokens.inc(tokens)
