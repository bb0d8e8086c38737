"""How many intra-op threads each concurrent forward pass gets on a CPU.

A forward pass that runs alone uses every thread, for the lowest latency. Under load, batches run side
by side on one lane each: on a small CPU, two single-threaded passes get more done than one pass on two
threads, whose threads wait for each other at every operator. torch's thread count is per calling thread
(OpenMP and MKL keep it thread-locally), so each worker sets its own before a batch.
"""

import threading

import torch


def default_lanes(threads: int, on_gpu: bool) -> int:
    """A GPU runs one batch at a time; a CPU with at least two threads runs two batches side by side."""
    return 1 if on_gpu else min(2, threads)


class LaneThreads:
    def __init__(self, threads: int, lanes: int, on_gpu: bool) -> None:
        self._per_lane = max(1, threads // lanes)
        self._on_gpu = on_gpu
        self._local = threading.local()

    def use(self, lanes: int) -> None:
        """Give the calling worker thread the threads of ``lanes`` lanes (no-op on a GPU)."""
        if self._on_gpu:
            return
        wanted = self._per_lane * lanes
        if getattr(self._local, "threads", None) != wanted:
            torch.set_num_threads(wanted)
            self._local.threads = wanted
