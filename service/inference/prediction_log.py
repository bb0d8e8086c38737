"""The prediction log: every served prediction, kept for feedback joins and drift checks.

``record`` only appends to an in-memory buffer, so logging never slows a response; a background thread
hands the buffer to a sink in batches. The sink is passed in (the service writes to its database), so
this module knows nothing of storage. When the buffer is full (in records or in bytes) or the sink fails,
records are dropped and counted rather than allowed to grow memory or back-pressure inference.

Input texts are cut to ``max_text_chars`` before they are buffered: drift reads no more than a prefix, and
a whole document per prediction would let a few large requests fill the buffer and the database.
"""

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from monitors.instruments import prediction_log_dropped_total

log = logging.getLogger("heldout.prediction_log")

# What a buffered record holds besides its texts and lists: the record, its ids, dicts and small values.
RECORD_OVERHEAD_BYTES = 1024
# One list slot plus one float object.
ITEM_BYTES = 32


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


def _value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return sys.getsizeof(value)
    if isinstance(value, list | tuple):
        return ITEM_BYTES * len(value)
    return 0


def record_bytes(record: PredictionRecord) -> int:
    """An estimate of the memory a buffered record holds: texts exactly, embeddings and lists per item."""
    size = RECORD_OVERHEAD_BYTES + _value_bytes(record.input_text) + _value_bytes(record.features.get("embedding"))
    if record.output is not None:
        size += sum(_value_bytes(value) for value in record.output.values())
    return size


class PredictionLog:
    def __init__(
        self,
        sink: PredictionSink,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        max_buffered: int = 100_000,
        max_buffered_bytes: int | None = None,
        max_text_chars: int | None = None,
    ) -> None:
        self._sink = sink
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._buffer: deque[tuple[PredictionRecord, int]] = deque()
        self._buffered_bytes = 0
        self._max_buffered = max_buffered
        self._max_bytes = max_buffered_bytes
        self._max_text_chars = max_text_chars
        self._lock = threading.Lock()
        # Held from taking a batch to its write's end: a flush returns only once nothing it could have
        # taken is still on its way to the store (feedback flushes, then looks its prediction ids up).
        self._writing = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._flush_loop, name="heldout-prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, records: Iterable[PredictionRecord]) -> None:
        """Non-blocking: buffer the records, texts cut and oldest dropped past the bounds; the flush thread
        writes them."""
        sized = [(record, record_bytes(record)) for record in map(self._cut, records)]
        dropped = 0
        with self._lock:
            self._buffer.extend(sized)
            self._buffered_bytes += sum(size for _, size in sized)
            while self._buffer and (len(self._buffer) > self._max_buffered or self._over_bytes()):
                self._buffered_bytes -= self._buffer.popleft()[1]
                dropped += 1
            full_batch = len(self._buffer) >= self._batch_size
        if dropped:
            prediction_log_dropped_total.inc(dropped)
        if full_batch:
            self._wake.set()

    def flush(self) -> None:
        """Write everything buffered now, from the calling thread, and wait for a batch being written."""
        with self._writing:
            while batch := self._next_batch():
                self._write(batch)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after it has written what is buffered."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.flush()

    def _cut(self, record: PredictionRecord) -> PredictionRecord:
        text, limit = record.input_text, self._max_text_chars
        if text is None or limit is None or len(text) <= limit:
            return record
        return replace(record, input_text=text[:limit])

    def _over_bytes(self) -> bool:
        return self._max_bytes is not None and self._buffered_bytes > self._max_bytes

    def _next_batch(self) -> list[PredictionRecord]:
        with self._lock:
            count = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(count)]
            self._buffered_bytes -= sum(size for _, size in batch)
        return [record for record, _ in batch]

    def _write(self, batch: list[PredictionRecord]) -> None:
        try:
            self._sink(batch)
        except Exception as exc:
            # Type only: a database error's message quotes the row parameters, user texts among them.
            log.warning("dropped %d prediction log records: the store failed (%s)", len(batch), type(exc).__name__)
            prediction_log_dropped_total.inc(len(batch))

    def _flush_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()
