"""One lane's continuous decoding loop: rows join between steps and leave as soon as they are done.

A static ``generate`` call admits nobody once it has started and runs until its longest row is done, so
under a stream of requests with mixed lengths most of its rows are finished padding while new requests
wait. Here each iteration prefills the rows that arrived since the last one, splices them into the
running ``KVBatch``, decodes one token for every row, and hands each finished row's result back at once.

The loop runs on its lane's thread while it has rows and returns when it has none; ``offer`` says when it
must be started again. Sampling draws from the session's own generator, never torch's global one, which
seeded requests on the static path own while they run.
"""

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch

from service.inference.encoding import TextEncoder
from service.inference.generator import GenOutput, output_of
from service.inference.kv_batch import KVBatch, decoding_model
from service.inference.loader import LoadedModel
from service.inference.rows import Progress, Row, RowSampling, TokenRouter

Done = Callable[[Row, GenOutput | Exception], None]
"""Called on the session's thread once per row, after the row's last text was handed to its sink."""
Admitted = Callable[[Sequence[Row], float, float], None]
"""Called with rows that just joined, when their prefill started (``perf_counter``) and its seconds."""


class DecodeSession:
    def __init__(
        self, loaded: LoadedModel, cache_name: str, prepare_thread: Callable[[], None], done: Done, admitted: Admitted
    ) -> None:
        self._model = decoding_model(loaded.model)
        self._cache_name = cache_name
        self._device = loaded.device
        self._stand_in = loaded.token_ids.stand_in
        self._encoder = TextEncoder(loaded.tokenizer, loaded.token_ids.pad)
        self._router = TokenRouter(self._encoder.decode_one, loaded.token_ids.eos)
        self._prepare_thread = prepare_thread
        self._done = done
        self._admitted = admitted
        self._rng = torch.Generator(loaded.device)
        self._rng.seed()
        self._lock = threading.Lock()
        self._inbox: list[Row] = []
        self._running = False
        self._rows: list[Row] = []
        self._progress: list[Progress] = []
        self._batch: KVBatch | None = None
        self._next: torch.Tensor | None = None
        """Each row's latest token: the next step's input."""

    def offer(self, rows: Sequence[Row]) -> bool:
        """Queues rows for the next iteration; True when the session was idle and ``run`` must be started."""
        with self._lock:
            self._inbox.extend(rows)
            start = not self._running
            self._running = True
        return start

    def run(self) -> None:
        """Decodes until no row is left or waiting; a failure fails the rows it concerns, not the session."""
        self._prepare_thread()
        with torch.inference_mode():
            while True:
                with self._lock:
                    joining, self._inbox = self._inbox, []
                    if not joining and not self._rows:
                        self._running = False
                        return
                if joining:
                    self._guarded(joining, partial(self._admit, joining))
                if self._rows:
                    self._guarded(self._rows, self._step)

    def _guarded(self, rows: list[Row], action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            failed = set(map(id, rows))
            kept = [i for i, row in enumerate(self._rows) if id(row) not in failed]
            self._keep(kept)
            for row in rows:
                self._done(row, exc)

    def _admit(self, rows: list[Row]) -> None:
        started = time.perf_counter()
        ids, mask = self._encoder.pad([row.encoded.ids or [self._stand_in] for row in rows], "left")
        batch, logits = KVBatch.prefill(self._model, self._cache_name, ids.to(self._device), mask.to(self._device))
        self._admitted(rows, started, time.perf_counter() - started)
        progress = [Progress() for _ in rows]
        tokens = self._route(rows, progress, logits)
        if self._batch is None or self._next is None:
            self._batch, self._next = batch, tokens
        else:
            self._batch.join(batch)
            self._next = torch.cat([self._next, tokens])
        self._rows += rows
        self._progress += progress
        self._finish()

    def _step(self) -> None:
        assert self._batch is not None and self._next is not None
        logits = self._batch.step(self._next)
        self._next = self._route(self._rows, self._progress, logits)
        self._finish()

    def _route(self, rows: Sequence[Row], progress: Sequence[Progress], logits: torch.Tensor) -> torch.Tensor:
        """Draws each row's next token and gives it to the row's text."""
        if any(row.params.do_sample for row in rows):
            scores = RowSampling([row.params for row in rows], logits.device).warp(logits)
            tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=self._rng).squeeze(1)
        else:
            tokens = logits.argmax(dim=-1)
        now = time.perf_counter()
        for row, state, token in zip(rows, progress, tokens.tolist(), strict=True):
            self._router.step(row, state, int(token), now)
        return tokens

    def _finish(self) -> None:
        """Hands out the text of this iteration, then the results of the rows it finished, and drops them."""
        self._router.deliver()
        kept = [i for i, state in enumerate(self._progress) if state.reason is None]
        if len(kept) == len(self._rows):
            return
        finished = [(row, state) for row, state in zip(self._rows, self._progress, strict=True) if state.reason]
        self._keep(kept)
        for row, state in finished:
            self._done(row, output_of(row, state))

    def _keep(self, kept: list[int]) -> None:
        self._rows = [self._rows[i] for i in kept]
        self._progress = [self._progress[i] for i in kept]
        if not kept or self._batch is None or self._next is None:
            self._batch = self._next = None
            self._rows, self._progress = [], []
            return
        self._batch.keep(kept)
        self._next = self._next[kept]
