"""Human ratings beside automatic scores: a rating summary with Krippendorff's alpha, and how well a
metric agrees with people across systems.

An item is one output (one test record of one evaluation). A system's human score is the mean over
its rated items of each item's mean rating, so every item weighs the same however many raters saw it.
Intervals are percentile bootstraps over items, resampled with ``metrics.bootstrap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np

from metrics.bootstrap import Interval, make_rng, percentile_interval, resampled_sums

# krippendorff.alpha holds a few (units x values x values) arrays; past this many cells the same
# formulas run here on (units x values) arrays instead.
PACKAGE_CELLS = 4_000_000


@dataclass(frozen=True)
class RatingSummary:
    n_items: int
    n_ratings: int
    raters: int
    mean: float
    interval: Interval
    krippendorff_alpha: float | None
    """Interval level; None when no item has two ratings or every rating is the same (alpha is undefined)."""


def _interval_alpha(value_counts: np.ndarray, domain: np.ndarray) -> float:
    """krippendorff.alpha's interval-level formulas, with the coincidence matrix as one matrix product."""
    pairable = np.maximum(value_counts.sum(axis=1), 2)
    weighted = value_counts / (pairable - 1)[:, None]
    o = weighted.T @ value_counts - np.diag(weighted.sum(axis=0))
    n_v = o.sum(axis=0)
    e = (np.outer(n_v, n_v) - np.diagflat(n_v)) / (n_v.sum() - 1)
    d = (domain[:, None] - domain[None, :]) ** 2
    return float(1 - (o * d).sum() / (e * d).sum())


def krippendorff_alpha(items: np.ndarray, ratings: np.ndarray) -> float | None:
    """Interval alpha of ratings given to items (any number of raters per item), as ``krippendorff.alpha``.

    Units rated once add nothing to the coincidences, so only items with two or more ratings go in.
    """
    _, item, per_item = np.unique(items, return_inverse=True, return_counts=True)
    pairable = per_item[item.ravel()] >= 2
    domain, value = np.unique(ratings[pairable], return_inverse=True)
    if domain.size < 2:
        return None
    _, unit = np.unique(item.ravel()[pairable], return_inverse=True)
    counts = np.zeros((int(unit.max()) + 1, domain.size))
    np.add.at(counts, (unit.ravel(), value.ravel()), 1)
    if counts.shape[0] * domain.size**2 <= PACKAGE_CELLS:
        alpha = float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement="interval"))
    else:
        alpha = _interval_alpha(counts, domain)
    return alpha if np.isfinite(alpha) else None


def item_means(items: np.ndarray, ratings: np.ndarray, n_items: int) -> np.ndarray:
    """Mean rating per item position 0..n_items-1, NaN where unrated."""
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.bincount(items, weights=ratings, minlength=n_items) / counts


def _mean_of(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(sums[:, 1] / sums[:, 0])


def rating_summary(
    items: np.ndarray,
    raters: np.ndarray,
    ratings: np.ndarray,
    *,
    n_resamples: int,
    seed: int | None,
    level: float,
) -> RatingSummary:
    """The summary of one evaluation's ratings: ``items`` are record positions, ``raters`` any labels."""
    rated, item = np.unique(items, return_inverse=True)
    means = item_means(item.ravel(), ratings, rated.size)
    stats = np.column_stack([np.ones(rated.size), means])
    samples = _mean_of(resampled_sums(stats, n_resamples, make_rng(seed)))
    return RatingSummary(
        n_items=int(rated.size),
        n_ratings=int(ratings.size),
        raters=int(np.unique(raters).size),
        mean=float(means.mean()),
        interval=percentile_interval(samples, level),
        krippendorff_alpha=krippendorff_alpha(items, ratings),
    )


# -- agreement between a metric and people ------------------------------------------------------


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of (m, k) arrays (scipy.stats.kendalltau's default); NaN if undefined."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    first, second = np.triu_indices(x.shape[1], k=1)
    sx, sy = np.sign(x[:, first] - x[:, second]), np.sign(y[:, first] - y[:, second])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((sx * sy).sum(axis=1) / np.sqrt((sx != 0).sum(axis=1) * (sy != 0).sum(axis=1)))


def pearson_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair of (m, k) arrays, clipped to [-1, 1] as scipy's; NaN for a constant row."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    dx, dy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


@dataclass(frozen=True)
class Agreement:
    kendall_tau: float
    kendall_tau_interval: Interval
    pearson_r: float
    pearson_r_interval: Interval


def _human_stats(means: np.ndarray) -> np.ndarray:
    """Per item, for each system: [rated, mean rating or 0], so sums give each system's human mean."""
    rated = ~np.isnan(means)
    return np.stack([rated, np.where(rated, means, 0.0)], axis=-1).reshape(means.shape[0], -1)


def agreement(
    metric_stats: Sequence[np.ndarray],
    score_fn: Callable[[np.ndarray], np.ndarray],
    human_means: np.ndarray,
    *,
    n_resamples: int,
    seed: int | None,
    level: float,
) -> Agreement:
    """System-level Kendall tau-b and Pearson r between a metric and the mean human rating.

    ``metric_stats`` holds each system's per-item statistics (n_items, width) and ``human_means`` its
    item means (n_items, systems; NaN where unrated). Each bootstrap resample draws the items once for
    every system, then scores the metric and the human mean of each system on it; resamples where a
    system has no rated item, or a correlation is undefined, are dropped.
    """
    n_systems = len(metric_stats)
    width = metric_stats[0].shape[1]
    stacked = np.hstack([*metric_stats, _human_stats(human_means)])
    full = stacked.sum(axis=0)[None]
    sums = np.vstack([full, resampled_sums(stacked, n_resamples, make_rng(seed))])
    metric = np.column_stack([score_fn(sums[:, k * width : (k + 1) * width]) for k in range(n_systems)])
    human_sums = sums[:, n_systems * width :].reshape(len(sums), n_systems, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        human = human_sums[:, :, 1] / human_sums[:, :, 0]
    tau, r = kendall_tau_b(metric, human), pearson_r(metric, human)
    return Agreement(
        kendall_tau=float(tau[0]),
        kendall_tau_interval=percentile_interval(tau[1:], level),
        pearson_r=float(r[0]),
        pearson_r_interval=percentile_interval(r[1:], level),
    )
