"""Seeded bootstrap resampling that never materialises resampled datasets.

Resampling n examples with replacement is the same as drawing a multinomial count vector over
the examples. When a statistic depends only on a few sufficient counts (a confusion matrix, n-gram
match totals), the counts can be drawn directly over those cells, or multiplied into per-example
statistics, which is exact and far cheaper than re-running a metric per resample.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Rows of example-level counts generated at once: bounds memory to about CHUNK_CELLS * 8 bytes.
CHUNK_CELLS = 4_000_000


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
    done = 0
    while done < n_resamples:
        rows = min(rows_per_chunk, n_resamples - done)
        idx = rng.integers(0, n_examples, size=(rows, n_examples))
        idx += (np.arange(rows, dtype=np.int64) * n_examples)[:, None]
        yield np.bincount(idx.ravel(), minlength=rows * n_examples).reshape(rows, n_examples)
        done += rows


def resampled_sums(stats: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, d) column sums of ``stats`` (n_examples, d) over bootstrap resamples of its rows."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    parts = [chunk.astype(np.float64) @ stats for chunk in example_count_chunks(len(stats), n_resamples, rng)]
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, stats.shape[1]))


def percentile_interval(samples: np.ndarray, level: float) -> Interval:
    """Percentile interval; NaN resamples (an undefined score) are dropped rather than poisoning it."""
    values = np.asarray(samples, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"), level)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high), level)
