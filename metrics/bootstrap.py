"""Seeded bootstrap resampling that never materialises resampled datasets.

Resampling n examples with replacement is the same as drawing a multinomial count vector over
the examples. When a statistic depends only on a few sufficient counts (a confusion matrix, n-gram
match totals), the counts can be drawn directly over those cells, or multiplied into per-example
statistics, which is exact and far cheaper than re-running a metric per resample.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

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


def example_count_chunks(
    n_examples: int, n_resamples: int, rng: np.random.Generator, chunk_cells: int = CHUNK_CELLS
) -> Iterator[np.ndarray]:
    """Yield (rows, n_examples) int matrices; row r says how often each example appears in resample r.

    Multiply a chunk into a per-example statistics matrix (``chunk @ stats``) to get the summed
    statistics of each resample.
    """
    rows_per_chunk = max(1, chunk_cells // max(1, n_examples))
    offsets = (np.arange(rows_per_chunk, dtype=np.int64) * n_examples)[:, None]
    done = 0
    while done < n_resamples:
        rows = min(rows_per_chunk, n_resamples - done)
        idx = rng.integers(0, n_examples, size=(rows, n_examples))
        idx += offsets[:rows]
        yield np.bincount(idx.ravel(), minlength=rows * n_examples).reshape(rows, n_examples)
        done += rows


def resampled_sums(stats: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, d) column sums of ``stats`` (n_examples, d) over bootstrap resamples of its rows.

    Counts go through one reused float buffer into a BLAS product; a fresh float copy per chunk cost
    as much as the product.
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    out = np.empty((n_resamples, stats.shape[1]))
    buffer = np.empty((min(n_resamples, max(1, CHUNK_CELLS // max(1, len(stats)))), len(stats)))
    done = 0
    for chunk in example_count_chunks(len(stats), n_resamples, rng):
        rows = len(chunk)
        np.copyto(buffer[:rows], chunk, casting="unsafe")
        np.matmul(buffer[:rows], stats, out=out[done : done + rows])
        done += rows
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
