"""Requests with different options sharing one ``generate`` call: each row keeps its own.

``generate`` takes its options per call, so a batcher that keyed batches on them would run a request for
8 tokens and one for 32 apart. Here every per-row option is applied inside the one call instead:

- ``RowStreamer`` (a batch-aware ``BaseStreamer``) gets each step's tokens for the whole batch and gives
  them to a ``TokenRouter``, which keeps each row's tokens and text, cuts at stop strings, and hands each
  step's new text to the rows' ``sink``s in one call per sink, so a streaming caller's event loop is woken
  once per step, not once per row;
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


Sink = Callable[[list[Delta]], None]
"""Called on the worker thread with a step's deltas of the sink's rows; a streaming caller hands them to its
event loop."""


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
    searched: int = 0
    """Characters of ``text`` already searched for stop strings."""
    prefix_offset: int = 0
    read_offset: int = 0
    """``tokens[prefix_offset:read_offset]`` is the context the next tokens are decoded after (as in
    text-generation-inference): a few tokens, so each step decodes a short window, not the whole row."""
    reason: FinishReason | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None


class TokenRouter:
    """Turns each row's tokens into text: decodes incrementally, holding back partial characters, cuts at stop
    strings and queues the new text for the rows' sinks until ``deliver``. Used by ``RowStreamer`` inside
    ``generate`` and by the continuous decoder, whose rows come and go between steps."""

    def __init__(self, decode: Callable[[list[int]], str], eos: int | None) -> None:
        self._decode = decode
        self._eos = eos
        self._outbox: dict[Sink, list[Delta]] = {}

    def close(self, row: Row, progress: Progress) -> None:
        """Ends an open row that has no more steps: aborted if its caller left, else at its length."""
        if progress.reason is None:
            if row.cancelled:
                self._finish(row, progress, "abort")
            else:
                self._flush(row, progress, "length")

    def deliver(self) -> None:
        """Hands the queued text to the sinks, one call per sink."""
        outbox, self._outbox = self._outbox, {}
        for sink, deltas in outbox.items():
            sink(deltas)

    def step(self, row: Row, progress: Progress, token: int, now: float) -> None:
        """One generated token of an open row; sets ``progress.reason`` when the row ends with it."""
        if row.cancelled:
            self._finish(row, progress, "abort")
            return
        if token == self._eos:
            self._flush(row, progress, "stop")
            return
        progress.first_token_at = progress.first_token_at or now
        progress.last_token_at = now
        progress.tokens.append(token)
        if len(progress.tokens) >= row.params.max_new_tokens:
            self._flush(row, progress, "length")
            return
        self._read(progress, final=False)
        if self._cut(row, progress):
            self._finish(row, progress, "stop")
        else:
            self._send(row, progress, len(progress.text) - _stop_prefix(progress.text, row.params.stop))

    def _read(self, progress: Progress, final: bool) -> None:
        """Appends the text of the tokens past ``read_offset``, decoded after their context, unless it ends in
        a partial character (which ``final`` keeps, as decoding the whole row would)."""
        tokens = progress.tokens
        if progress.read_offset == len(tokens):
            return
        context = self._decode(tokens[progress.prefix_offset : progress.read_offset])
        window = self._decode(tokens[progress.prefix_offset :])
        if len(window) > len(context) and (final or not window.endswith(PARTIAL)):
            progress.text += window[len(context) :]
            progress.prefix_offset, progress.read_offset = progress.read_offset, len(tokens)

    def _cut(self, row: Row, progress: Progress) -> bool:
        """Cuts ``text`` at its first stop string; only text that a new stop could reach is searched again."""
        stops = row.params.stop
        if not stops:
            return False
        start = max(0, progress.searched - max(map(len, stops)) + 1)
        found = [at for at in (progress.text.find(stop, start) for stop in stops) if at >= 0]
        progress.searched = len(progress.text)
        if not found:
            return False
        progress.text = progress.text[: min(found)]
        return True

    def _flush(self, row: Row, progress: Progress, reason: FinishReason) -> None:
        """Ends a row whose last tokens may still be unread: their text counts, partial characters included."""
        self._read(progress, final=True)
        self._finish(row, progress, "stop" if self._cut(row, progress) else reason)

    def _finish(self, row: Row, progress: Progress, reason: FinishReason) -> None:
        progress.reason = reason
        self._send(row, progress, len(progress.text))

    def _send(self, row: Row, progress: Progress, upto: int) -> None:
        if upto > progress.sent and row.sink is not None:
            self._outbox.setdefault(row.sink, []).append(Delta(row.index, progress.text[progress.sent : upto]))
        progress.sent = max(progress.sent, upto)


class RowStreamer(BaseStreamer):
    """``generate``'s streamer over a fixed batch of rows: each step's tokens go to their rows' ``Progress``."""

    def __init__(self, rows: Sequence[Row], decode: Callable[[list[int]], str], eos: int | None) -> None:
        self._rows = rows
        self._router = TokenRouter(decode, eos)
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
                self._router.step(row, progress, int(token), now)
        self._router.deliver()

    def end(self) -> None:
        """Rows still open when ``generate`` returns have used every step it had."""
        for row, progress in zip(self._rows, self.progress, strict=True):
            self._router.close(row, progress)
        self._router.deliver()


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
        return self.warp(scores)  # type: ignore[return-value]

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        """Each row's scores with what its options rule out at -inf; softmax and a draw give its next token."""
        best = scores.argmax(dim=-1, keepdim=True)
        argmax_only = torch.full_like(scores, -torch.inf).scatter(1, best, 0.0)
        scaled = scores / self._temperature[:, None]
        ordered, order = torch.sort(scaled, descending=False)
        below = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - self._top_p[:, None])
        below[:, -1] = False
        sampled = scaled.masked_fill(below.scatter(1, order, below), -torch.inf)
        return torch.where(self._greedy, argmax_only, sampled)
