"""The prediction log: every served prediction, kept for feedback joins and drift checks.

``record`` only appends to an in-memory buffer, so logging never slows a response; a background thread
hands the buffer to a sink in batches. The sink is passed in (the service writes to its database), so
this module knows nothing of storage. When the buffer is full or the sink fails, records are dropped and
counted rather than allowed to grow memory or back-pressure inference.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitors.instruments import prediction_log_dropped_total

log = logging.getLogger("heldout.prediction_log")


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    id: str
    model: str
    model_version: str
    task: str
    created_at: datetime
    features: dict[str, Any]
    """Input features drift checks compare: n_chars, n_tokens, truncated; for classifiers also unk_share and
    embedding (``monitors.drift_features.classifier_log_features``)."""
    label: str | None
    score: float | None
    output: dict[str, Any] | None
    """What label and score cannot hold: multi-label sets, generated text."""
    input_text: str | None


PredictionSink = Callable[[Sequence[PredictionRecord]], None]


class PredictionLog:
    def __init__(
        self,
        sink: PredictionSink,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        max_buffered: int = 100_000,
    ) -> None:
        self._sink = sink
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._buffer: deque[PredictionRecord] = deque()
        self._max_buffered = max_buffered
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._flush_loop, name="heldout-prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, records: Iterable[PredictionRecord]) -> None:
        """Non-blocking: buffer the records; the flush thread writes them."""
        dropped = 0
        with self._lock:
            self._buffer.extend(records)
            while len(self._buffer) > self._max_buffered:
                self._buffer.popleft()
                dropped += 1
            full_batch = len(self._buffer) >= self._batch_size
        if dropped:
            prediction_log_dropped_total.inc(dropped)
        if full_batch:
            self._wake.set()

    def flush(self) -> None:
        """Write everything buffered now, from the calling thread."""
        while batch := self._next_batch():
            self._write(batch)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after it has written what is buffered."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.flush()

    def _next_batch(self) -> list[PredictionRecord]:
        with self._lock:
            count = min(self._batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def _write(self, batch: list[PredictionRecord]) -> None:
        try:
            self._sink(batch)
        except Exception:
            log.warning("dropped %d prediction log records: the store failed", len(batch), exc_info=True)
            prediction_log_dropped_total.inc(len(batch))

    def _flush_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()
