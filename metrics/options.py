"""Checks of the options metric entry points share, so each option fails the same way everywhere.

Each check returns the normalised value (numpy integers become ``int``) or raises MetricInputError
naming the option, which the service turns into a 422 for that field.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics.errors import MetricInputError

AVERAGES: tuple[str | None, ...] = (None, "binary", "micro", "macro", "weighted", "samples")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_average(average: Any) -> str | None:
    if average not in AVERAGES:
        raise MetricInputError(f"average must be one of {list(AVERAGES)}, got {average!r}", "average")
    return None if average is None else str(average)


def check_confidence_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MetricInputError(f"confidence_level must be strictly between 0 and 1, got {level!r}", "confidence_level")
    return float(level)


def check_resamples(n_resamples: Any, max_resamples: int | None, minimum: int) -> int:
    """At least ``minimum`` (0 turns intervals off where that is allowed), at most the operator's limit."""
    if not _is_int(n_resamples) or n_resamples < minimum:
        raise MetricInputError(f"n_resamples must be an integer >= {minimum}, got {n_resamples!r}", "n_resamples")
    if max_resamples is not None and n_resamples > max_resamples:
        raise MetricInputError(f"n_resamples={n_resamples} exceeds the limit of {max_resamples}", "n_resamples")
    return int(n_resamples)


def check_seed(seed: Any) -> int | None:
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise MetricInputError("seed must be a non-negative integer or null", "seed")
    return None if seed is None else int(seed)


def check_metric_names(metrics: Any, known: Sequence[str]) -> list[str]:
    """Requested metric names (one name or a list), deduplicated in order, all among ``known``."""
    names = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(names, Sequence) or len(names) == 0:
        raise MetricInputError(f"metrics must name at least one of {', '.join(known)}", "metrics")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise MetricInputError(f"unknown metrics {unknown}; use {', '.join(known)}", "metrics")
    return list(dict.fromkeys(names))
