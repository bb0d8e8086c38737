"""Slices: the examples of each group, and the privacy rule that merges small groups.

A metric per slice is the metric run on that group's examples alone. Where slices are released from a
blind set, a group smaller than ``min_size`` would single out a few hidden labels, so such groups are
pooled into one ``other`` slice, itself withheld when still smaller than ``min_size``.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics.errors import MetricInputError

# Distinct groups one request may slice by: each costs a full report with its own bootstrap.
MAX_GROUPS = 256
OTHER = "other"
FIELD = "groups"


def group_positions(groups: Sequence[Any], n_examples: int) -> dict[str, np.ndarray]:
    """Example positions per group, groups in sorted order; raises MetricInputError naming ``groups``."""
    if isinstance(groups, str | bytes) or not hasattr(groups, "__len__"):
        raise MetricInputError("groups must be a list with one string per example", FIELD)
    if len(groups) != n_examples:
        raise MetricInputError(f"groups has {len(groups)} entries but there are {n_examples} examples", FIELD)
    bad = next((i for i, g in enumerate(groups) if not isinstance(g, str)), None)
    if bad is not None:
        raise MetricInputError(f"groups[{bad}] must be a string", FIELD)
    names, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    if len(names) > MAX_GROUPS:
        raise MetricInputError(f"{len(names)} distinct groups; at most {MAX_GROUPS} are supported", FIELD)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    return {str(name): part for name, part in zip(names, np.split(order, bounds), strict=True)}


def releasable(positions: dict[str, np.ndarray], min_size: int) -> dict[str, np.ndarray]:
    """Groups of at least ``min_size`` examples, the rest pooled as ``other`` (kept only if it reaches min_size).

    A real group named ``other`` that is large enough keeps its name; the pooled small groups join it.
    """
    kept = {name: part for name, part in positions.items() if len(part) >= min_size and name != OTHER}
    small = [part for name, part in positions.items() if name not in kept]
    pooled = np.sort(np.concatenate(small)) if small else np.zeros(0, dtype=np.intp)
    if len(pooled) >= min_size and len(pooled) > 0:
        kept[OTHER] = pooled
    return kept


def take(values: Sequence[Any] | np.ndarray, positions: np.ndarray) -> Any:
    """The values at ``positions``: a list, or an array for an array."""
    if isinstance(values, np.ndarray):
        return values[positions]
    return [values[i] for i in positions]
