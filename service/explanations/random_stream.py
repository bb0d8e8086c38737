"""A seeded stream of torch's CPU random numbers for one explanation, safe beside concurrent ones.

captum's LIME and kernel SHAP samplers draw from torch's one global generator. Each draw here runs with the
global generator's state swapped for the stream's own, under a process-wide lock, so the same seed gives
the same samples whatever else runs meanwhile.
"""

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TypeVar

import torch

T = TypeVar("T")
_GLOBAL_GENERATOR = threading.Lock()


class RandomStream:
    def __init__(self, seed: int) -> None:
        generator = torch.Generator()
        generator.manual_seed(seed)
        self._state = generator.get_state()
        self._saved: torch.Tensor | None = None

    def __enter__(self) -> None:
        _GLOBAL_GENERATOR.acquire()
        self._saved = torch.get_rng_state()
        torch.set_rng_state(self._state)

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._saved is not None
        self._state = torch.get_rng_state()
        torch.set_rng_state(self._saved)
        self._saved = None
        _GLOBAL_GENERATOR.release()

    def call(self, draw: Callable[[], T]) -> T:
        with self:
            return draw()

    def iterate(self, draws: Iterator[T]) -> Iterator[T]:
        """``draws``, each item drawn from this stream."""
        while True:
            try:
                item = self.call(lambda: next(draws))
            except StopIteration:
                return
            yield item
