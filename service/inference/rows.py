"""Requests with different options sharing one ``generate`` call: each row keeps its own.

``generate`` takes its options per call, so a batcher that keyed batches on them would run a request for
8 tokens and one for 32 apart. Here every per-row option is applied inside the one call instead:

- ``RowStreamer`` (a batch-aware ``BaseStreamer``) gets each step's tokens for the whole batch, keeps each
  row's tokens and text, cuts at stop strings, and hands new text to the row's ``sink`` as it is decoded;
- ``RowStopping`` ends a row once it has its own ``max_new_tokens``, hit a stop string or lost its caller
  (``cancelled``): ``generate`` pads a finished row and returns once every row is finished;
- ``RowSampling`` applies each row's temperature and top-p; greedy rows keep only their argmax, so
  sampling draws exactly the token ``argmax`` would.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from service.inference.encoding import Encoded

FinishReason = Literal["stop", "length", "abort"]
# Trailing replacement characters are bytes of a character whose remaining bytes are still to come.
PARTIAL = "\ufffd"


@dataclass(frozen=True, slots=True)
class RowParams:
    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    """Text of row ``index`` (its position in its request) decoded since the previous delta."""

    index: int
    text: str


Sink = Callable[[Delta], None]
"""Called on the worker thread; a streaming caller hands the delta to its event loop."""


@dataclass(eq=False)
class Row:
    """One prompt's generation as the batcher queues it."""

    encoded: Encoded
    params: RowParams
    index: int = 0
    sink: Sink | None = None
    record: bool = True
    """Served traffic, counted in the latency metrics; evaluation inputs are not."""
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    """Set from the event loop when the caller leaves; read by ``RowStopping`` between steps."""


@dataclass(eq=False)
class Progress:
    """What one row has generated so far, kept on the worker thread."""

    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    """Characters of ``text`` already handed to the sink."""
    reason: FinishReason | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None


class RowStreamer(BaseStreamer):
    """Routes each step's tokens to their rows; decodes incrementally, holding back partial characters."""

    def __init__(self, rows: Sequence[Row], decode: Callable[[list[int]], str], eos: int | None) -> None:
        self._rows = rows
        self._decode = decode
        self._eos = eos
        self.progress = [Progress() for _ in rows]
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        # ``generate`` first puts the prompt (a decoder's start token, for seq2seq), then one token per row per step.
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = time.perf_counter()
        for row, progress, token in zip(self._rows, self.progress, value.reshape(-1).tolist(), strict=True):
            if progress.reason is None:
                self._step(row, progress, int(token), now)

    def end(self) -> None:
        """Rows still open when ``generate`` returns have used every step it had."""
        for row, progress in zip(self._rows, self.progress, strict=True):
            if progress.reason is None:
                self._finish(row, progress, "abort" if row.cancelled else "length")

    def _step(self, row: Row, progress: Progress, token: int, now: float) -> None:
        if row.cancelled:
            self._finish(row, progress, "abort")
            return
        if token == self._eos:
            self._finish(row, progress, "stop")
            return
        progress.first_token_at = progress.first_token_at or now
        progress.last_token_at = now
        progress.tokens.append(token)
        progress.text = self._decode(progress.tokens)
        cut = _first_stop(progress.text, row.params.stop)
        if cut is not None:
            progress.text = progress.text[:cut]
            self._finish(row, progress, "stop")
        elif len(progress.tokens) >= row.params.max_new_tokens:
            self._finish(row, progress, "length")
        else:
            held = _stop_prefix(progress.text, row.params.stop)
            self._send(row, progress, min(len(progress.text.rstrip(PARTIAL)), len(progress.text) - held))

    def _finish(self, row: Row, progress: Progress, reason: FinishReason) -> None:
        progress.reason = reason
        self._send(row, progress, len(progress.text))

    @staticmethod
    def _send(row: Row, progress: Progress, upto: int) -> None:
        if upto > progress.sent and row.sink is not None:
            row.sink(Delta(row.index, progress.text[progress.sent : upto]))
        progress.sent = max(progress.sent, upto)


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return min(found) if found else None


def _stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that may be the start of a stop string: not sent yet."""
    return max((k for stop in stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)


class RowStopping(StoppingCriteria):
    """Per-row ends: the row's own ``max_new_tokens``, a stop string or eos seen, or its caller gone."""

    def __init__(self, rows: Sequence[Row], streamer: RowStreamer, prompt_width: int) -> None:
        self._rows = rows
        self._progress = streamer.progress
        self._width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        # Called after each step's token is appended and before the streamer sees it.
        generated = input_ids.shape[1] - self._width
        done = [
            row.cancelled or progress.reason is not None or generated >= row.params.max_new_tokens
            for row, progress in zip(self._rows, self._progress, strict=True)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


class RowSampling(LogitsProcessor):
    """Each row's temperature and top-p (as ``TopPLogitsWarper``); greedy rows keep only their argmax."""

    def __init__(self, params: Sequence[RowParams], device: torch.device) -> None:
        self._greedy = torch.tensor([not p.do_sample for p in params], device=device)[:, None]
        self._temperature = torch.tensor([p.temperature if p.do_sample else 1.0 for p in params], device=device)
        self._top_p = torch.tensor([p.top_p if p.do_sample else 1.0 for p in params], device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        best = scores.argmax(dim=-1, keepdim=True)
        argmax_only = torch.full_like(scores, -torch.inf).scatter(1, best, 0.0)
        scaled = scores / self._temperature[:, None]
        ordered, order = torch.sort(scaled, descending=False)
        below = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - self._top_p[:, None])
        below[:, -1] = False
        sampled = scaled.masked_fill(below.scatter(1, order, below), -torch.inf)
        return torch.where(self._greedy, argmax_only, sampled)  # type: ignore[return-value]
