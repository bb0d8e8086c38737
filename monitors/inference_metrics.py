"""The inference series for one served model, with label values bound once and kept bounded."""

from collections.abc import Iterable, Sequence
from typing import Protocol

from monitors import instruments

# Past this many classes a label series per class costs more than it tells.
MAX_LABEL_SERIES = 50
NO_LABEL = "<none>"
FINISH_REASONS = ("stop", "length", "abort")


class Finished(Protocol):
    """A finished generation's timing (``time.perf_counter`` values) and outcome."""

    @property
    def n_tokens(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def first_token_at(self) -> float | None: ...
    @property
    def last_token_at(self) -> float | None: ...


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
        self._first_token = instruments.time_to_first_token_seconds.labels(model)
        self._per_token = instruments.time_per_output_token_seconds.labels(model)
        self._prompt_tokens = instruments.prompt_tokens_total.labels(model)
        finished = instruments.generation_finished_total
        self._finished = {reason: finished.labels(model, reason) for reason in FINISH_REASONS}
        self._depth.set(0)

    def describe(self, version: str, task: str, device: str, dtype: str) -> None:
        instruments.model_info.labels(self._model, version, task, device, dtype).set(1)

    def configured(
        self, packed: bool, lanes: int, threads_per_lane: int, max_batch_size: int, wide: bool, chosen_by: str
    ) -> None:
        instruments.inference_config_info.labels(
            self._model,
            str(packed).lower(),
            str(lanes),
            str(threads_per_lane),
            str(max_batch_size),
            str(wide).lower(),
            chosen_by,
        ).set(1)

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

    def finished(self, submitted: float, out: Finished) -> None:
        """One served generation: called on the worker thread as its batch ends, aborted rows included."""
        self._prompt_tokens.inc(out.n_tokens)
        self._finished[out.finish_reason].inc()
        if out.first_token_at is not None:
            self._first_token.observe(out.first_token_at - submitted)
        if out.first_token_at is not None and out.last_token_at is not None and out.tokens > 1:
            self._per_token.observe((out.last_token_at - out.first_token_at) / (out.tokens - 1))
