"""Seeded bootstrap resampling that never materialises resampled datasets.

Resampling n examples with replacement is the same as drawing a multinomial count vector over
the examples. When a statistic depends only on a few sufficient counts (a confusion matrix, n-gram
match totals), the counts can be drawn directly over those cells, or multiplied into per-example
statistics, which is exact and far cheaper than re-running a metric per resample.
"""

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


def cell_counts_resamples(cell_counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_cells) counts: the cell totals of n_resamples bootstrap resamples of the examples.

    Exact whenever every example falls in exactly one cell.
    """
    counts = np.asarray(cell_counts, dtype=np.int64).ravel()
    total = int(counts.sum())
    if total == 0:
        return np.zeros((n_resamples, counts.size), dtype=np.int64)
    return rng.multinomial(total, counts / total, size=n_resamples)


def resampled_sums(stats: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, d) column sums of ``stats`` (n_examples, d) over bootstrap resamples of its rows.

    Each resample draws n example indices and counts them (a multinomial count vector over the
    examples); the counts times ``stats`` are the resample's sums. Counting one resample at a time keeps
    the counts in cache, and integer statistics whose sums stay below 2**24 multiply in float32, which
    is then exact and halves the memory the product streams through.
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    n = len(stats)
    exact_in_float32 = (
        n > 0 and bool((stats >= 0).all()) and bool((stats == np.round(stats)).all()) and n * stats.max() < 2**24
    )
    weights = stats.astype(np.float32) if exact_in_float32 else stats
    out = np.empty((n_resamples, stats.shape[1]))
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
