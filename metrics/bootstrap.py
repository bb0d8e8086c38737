"""Seeded bootstrap resampling that never materialises resampled datasets.

Resampling n examples with replacement is the same as drawing a multinomial count vector over
the examples. When a statistic depends only on a few sufficient counts (a confusion matrix, n-gram
match totals), the counts can be drawn directly over those cells, or multiplied into per-example
statistics, which is exact and far cheaper than re-running a metric per resample.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from metrics.cancel import checkpoint

# Example-level counts generated at once: about CHUNK_CELLS * 8 bytes per buffer. Kept below glibc's
# 32 MiB mmap threshold so the buffers are reused rather than mapped and faulted in for every chunk.
CHUNK_CELLS = 1_000_000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    method: str = "percentile_bootstrap"


def make_rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def multinomial_resamples(cell_counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of examples that fall one per cell, as (rows, n_cells) int64 cell counts per chunk.

    One multinomial draw per resample, over the occupied cells only (an empty cell stays 0), in chunks of
    about CHUNK_CELLS counts with a ``checkpoint()`` before each. The chunking does not change the draws.
    """
    counts = np.asarray(cell_counts, dtype=np.int64).ravel()
    occupied = np.flatnonzero(counts)
    total = int(counts.sum())
    rows = max(1, CHUNK_CELLS // max(1, counts.size))
    for start in range(0, n_resamples, rows):
        checkpoint()
        size = min(rows, n_resamples - start)
        if total == 0:
            yield np.zeros((size, counts.size), dtype=np.int64)
            continue
        draws = rng.multinomial(total, counts[occupied] / total, size=size)
        if occupied.size == counts.size:
            yield draws
            continue
        full = np.zeros((size, counts.size), dtype=np.int64)
        full[:, occupied] = draws
        yield full


def _exact_in_float32(stats: np.ndarray, n_examples: int) -> bool:
    """Non-negative integer statistics whose sums over n_examples stay below 2**24: float32 is then exact."""
    return (
        n_examples > 0
        and bool((stats >= 0).all())
        and bool((stats == np.round(stats)).all())
        and n_examples * stats.max() < 2**24
    )


def resampled_sums(
    stats: np.ndarray, n_resamples: int, rng: np.random.Generator, multiplicity: np.ndarray | None = None
) -> np.ndarray:
    """(n_resamples, d) column sums of ``stats`` (n_rows, d) over bootstrap resamples of the examples.

    Without ``multiplicity`` each row is one example: a resample draws n row indices and counts them (the
    generator calls of a materialised resample, and sacrebleu's); counting one resample at a time keeps
    the counts in cache. With it, row i stands for multiplicity[i] identical examples and a resample is
    one multinomial draw over the rows (``multinomial_resamples``). Either way the counts times ``stats``
    are the resample's sums, multiplied in float32 where that is exact (it halves the memory streamed).
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    n = len(stats) if multiplicity is None else int(np.sum(multiplicity))
    weights = stats.astype(np.float32) if _exact_in_float32(stats, n) else stats
    out = np.empty((n_resamples, stats.shape[1]))
    if multiplicity is not None:
        start = 0
        for counts in multinomial_resamples(multiplicity, n_resamples, rng):
            out[start : start + len(counts)] = counts.astype(weights.dtype) @ weights
            start += len(counts)
        return out
    rows = max(1, min(n_resamples, CHUNK_CELLS // max(1, n)))
    counts = np.empty((rows, n), dtype=weights.dtype)
    for start in range(0, n_resamples, rows):
        checkpoint()
        block = min(rows, n_resamples - start)
        draws = rng.integers(0, n, size=(block, n))
        for row in range(block):
            counts[row] = np.bincount(draws[row], minlength=n)
        out[start : start + block] = counts[:block] @ weights
    return out


def percentile_interval(samples: np.ndarray, level: float) -> Interval:
    """Percentile interval; NaN resamples (an undefined score) are dropped rather than poisoning it."""
    values = np.asarray(samples, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"), level)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high), level)
