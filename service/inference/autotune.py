"""Serving choices made by measurement at start, on the machine that serves, as oneDNN's and TVM's
autotuners do: the fastest of the candidates on probe batches, unless a setting forces the choice.

On one 2-core AMD EPYC, oneDNN's packed linear layers ran MiniLM at twice MKL's speed; on a 2-core Intel
Xeon they lost to MKL. Which layout of threads and which batch cap win depends on the CPU in the same
way. So, on the CPU, these choices are timed during warm-up:

- packed or stock linear layers (forward passes over a probe batch, the faster kept);
- one wide lane with every thread, or two narrow lanes with half the threads each (the same probe
  batches run one after another on the wide lane, or side by side on the narrow ones);
- the classifier batch cap: the smallest of 8, 16 and 32 whose cost per example is within 5% of the best
  (a larger batch only adds latency then);
- with two lanes, whether a lone batch (nothing queued behind it) takes every lane's threads or keeps to
  its own lane's: one example on a worker thread, timed both ways. On the 2-core AMD EPYC, two intra-op
  threads started on a worker thread took 7.2 ms for MiniLM where one took 5.2 (4.3 on the main thread).

The probe batches are random token ids of ``PROBE_TOKENS`` tokens (a typical sentence). A model too slow
for that to take a second or two keeps the defaults. A causal LM keeps the default lanes and decoding
rows: its decoding steps are not classifier batches.
"""

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch

from service.inference.loader import LoadedModel
from service.inference.packed_linear import pack
from service.settings import Settings
from service.tasks import ModelTask

log = logging.getLogger("heldout.inference")

BATCH_CAPS = (8, 16, 32)
PROBE_TOKENS = 32
REPEATS = 3
# Differences within this fraction are noise on a shared machine: the cheaper or default choice stays.
TOLERANCE = 0.05
# Past this many seconds for one probe batch, measuring every candidate would slow start-up too much.
SLOW_PROBE_S = 0.25

Source = Literal["setting", "measured", "default"]


@dataclass(frozen=True)
class ServingPlan:
    """What the engine runs with, where each choice came from, and the timings behind it."""

    packed_linear: bool
    lanes: int
    threads: int
    max_batch_size: int | None
    """None: the engine's default for the model's task and device."""
    wide_lone_batches: bool = True
    """Whether a classifier batch with nothing queued behind it runs on every lane's threads."""
    chosen_by: dict[str, Source] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Milliseconds per example of each candidate measured."""

    @property
    def threads_per_lane(self) -> int:
        return max(1, self.threads // self.lanes)

    def describe(self) -> str:
        timings = ", ".join(f"{name} {ms:.2f} ms" for name, ms in self.timings_ms.items())
        return (
            f"packed linear {self.packed_linear} ({self.chosen_by['packed_linear']}), {self.lanes} lane(s) of "
            f"{self.threads_per_lane} thread(s) ({self.chosen_by['lanes']}), batch cap "
            f"{self.max_batch_size or 'default'} ({self.chosen_by['max_batch_size']}), lone batches "
            f"{'on every lane' if self.wide_lone_batches else 'on one lane'} ({self.chosen_by['wide_lone_batches']})"
            + (f"; per example: {timings}" if timings else "")
        )


def plan_serving(loaded: LoadedModel, settings: Settings, default_lanes: int) -> ServingPlan:
    """Packs (or not) ``loaded.model`` in place and returns the plan the engine should follow. The probes set
    torch's thread count, which is process-wide whichever thread sets it; the caller's is restored."""
    callers_threads = torch.get_num_threads()
    try:
        return _plan(loaded, settings, default_lanes)
    finally:
        torch.set_num_threads(callers_threads)


def _plan(loaded: LoadedModel, settings: Settings, default_lanes: int) -> ServingPlan:
    threads = settings.torch_threads or torch.get_num_threads()
    chosen: dict[str, Source] = {}
    timings: dict[str, float] = {}
    cpu = loaded.device.type == "cpu"
    probe = _Probe(loaded)

    packed, chosen["packed_linear"] = False, "setting" if settings.packed_linear is False else "default"
    if cpu and settings.packed_linear is not False:
        packing = pack(loaded.model)
        packed = packing.count > 0
        if settings.packed_linear:
            chosen["packed_linear"] = "setting"
        elif packed:

            def kernel(use_packed: bool) -> float:
                packing.use(use_packed)
                return probe.per_example(BATCH_CAPS[0], threads)

            costs = fastest({"packed": partial(kernel, True), "stock": partial(kernel, False)})
            timings |= costs
            packed = costs["packed"] <= costs["stock"] * (1 + TOLERANCE)
            packing.use(packed)
            chosen["packed_linear"] = "measured"

    tunable = cpu and loaded.task.classifies and probe.fast_enough(probe.per_example(BATCH_CAPS[0], threads))
    lanes = settings.concurrent_batches or default_lanes
    chosen["lanes"] = "setting" if settings.concurrent_batches else "default"
    if tunable and settings.concurrent_batches is None and threads >= 2:
        costs = fastest(
            {"one wide lane": partial(probe.lanes, 1, threads), "two narrow lanes": partial(probe.lanes, 2, threads)}
        )
        timings |= costs
        lanes = 2 if costs["two narrow lanes"] < costs["one wide lane"] * (1 - TOLERANCE) else 1
        chosen["lanes"] = "measured"

    batch = settings.max_batch_size
    chosen["max_batch_size"] = "setting" if batch else "default"
    if tunable and batch is None:
        per_lane = max(1, threads // lanes)
        costs = fastest({f"batch {size}": partial(probe.per_example, size, per_lane) for size in BATCH_CAPS})
        timings |= costs
        best = min(costs.values())
        batch = next(size for size in BATCH_CAPS if costs[f"batch {size}"] <= best * (1 + TOLERANCE))
        chosen["max_batch_size"] = "measured"

    wide = settings.wide_lone_batches is not False
    chosen["wide_lone_batches"] = "setting" if settings.wide_lone_batches is not None else "default"
    per_lane = max(1, threads // lanes)
    if tunable and settings.wide_lone_batches is None and per_lane < threads:
        costs = fastest(
            {"lone batch, every lane's threads": partial(probe.lone, threads),
             "lone batch, one lane's threads": partial(probe.lone, per_lane)}
        )  # fmt: skip
        timings |= costs
        wide = costs["lone batch, every lane's threads"] <= costs["lone batch, one lane's threads"] * (1 + TOLERANCE)
        chosen["wide_lone_batches"] = "measured"
    return ServingPlan(packed, lanes, threads, batch, wide, chosen, timings)


class _Probe:
    """Forward passes over random token ids, timed per example (the best of ``REPEATS``)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._model = loaded.model
        self._device = loaded.device
        self._vocab = int(loaded.model.config.vocab_size)
        self._length = max(2, min(PROBE_TOKENS, loaded.max_length))
        self._seq2seq = loaded.task is ModelTask.seq2seq_lm

    def fast_enough(self, per_example_s: float) -> bool:
        return per_example_s * BATCH_CAPS[-1] <= SLOW_PROBE_S

    def per_example(self, size: int, threads: int) -> float:
        """Seconds per example of one probe batch, after one untimed pass."""
        forward = self._forward(size)
        torch.set_num_threads(threads)
        forward()
        return _timed(forward) / size

    def lanes(self, lanes: int, threads: int) -> float:
        """Seconds per example of two probe batches of the smallest cap over ``lanes`` lanes."""
        forward = self._forward(BATCH_CAPS[0])
        per_lane = max(1, threads // lanes)
        batches = 2

        def run(count: int) -> None:
            torch.set_num_threads(per_lane)  # per thread: each lane's worker sets its own
            for _ in range(count):
                forward()

        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(run, [1] * lanes))  # warm each thread's pool
            start = time.perf_counter()
            list(pool.map(run, [batches // lanes] * lanes))
            seconds = time.perf_counter() - start
        return seconds / (batches * BATCH_CAPS[0])

    def lone(self, threads: int) -> float:
        """Seconds of a one-example probe batch on a fresh worker thread with ``threads`` intra-op threads, as
        a lane runs a lone request (the best of ``REPEATS``, after one untimed pass)."""
        forward = self._forward(1)

        def run() -> float:
            torch.set_num_threads(threads)
            forward()
            return min(_timed(forward) for _ in range(REPEATS))

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    def _forward(self, size: int) -> Callable[[], None]:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, self._vocab, (size, self._length), generator=generator).to(self._device)
        extra = {"decoder_input_ids": ids[:, :1]} if self._seq2seq else {}

        def forward() -> None:
            with torch.inference_mode():
                self._model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)

        return forward


def fastest(candidates: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The best of ``REPEATS`` timings of each candidate, in milliseconds per example, taken in turns so that
    a machine whose speed drifts favours none of them."""
    best = dict.fromkeys(candidates, math.inf)
    for _ in range(REPEATS):
        for name, measure in candidates.items():
            best[name] = min(best[name], measure() * 1000)
    return best


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
