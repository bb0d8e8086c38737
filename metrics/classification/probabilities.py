"""Reading per-example probability objects ({label: probability}) into a matrix over the label universe.

Keys are matched to labels by their text, as JSON object keys are always strings. Every row must name the
same labels, among them every label of the data; columns follow the universe, then any further labels the
rows name (a model's classes that neither predictions nor references use), in text order.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metrics.errors import MetricInputError

# How far a row's sum may stray from 1.
SUM_TOLERANCE = 1e-6
FIELD = "probabilities"


def _columns(first: Mapping[Any, Any], universe: Sequence[Any]) -> list[str]:
    names = [str(label) for label in universe]
    missing = [name for name in names if name not in {str(key) for key in first}]
    if missing:
        raise MetricInputError(f"probabilities[0] lacks labels {missing[:20]}", FIELD)
    known = set(names)
    return names + sorted(str(key) for key in first if str(key) not in known)


def _row(values: Mapping[Any, Any], i: int, index: dict[str, int], width: int) -> list[float]:
    if not isinstance(values, Mapping):
        raise MetricInputError(f"probabilities[{i}] must be an object mapping each label to its probability", FIELD)
    row = [math.nan] * width
    for key, value in values.items():
        column = index.get(str(key))
        if column is None:
            message = f"probabilities[{i}] names label {str(key)!r}, which probabilities[0] does not"
            raise MetricInputError(message, FIELD)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise MetricInputError(f"probabilities[{i}][{str(key)!r}] must be a number in [0, 1]", FIELD)
        row[column] = float(value)
    if len(values) != width or any(math.isnan(v) for v in row):
        raise MetricInputError(f"probabilities[{i}] must name the same {width} labels as probabilities[0]", FIELD)
    total = math.fsum(row)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise MetricInputError(f"probabilities[{i}] sums to {total!r}, not 1 (within {SUM_TOLERANCE:g})", FIELD)
    return row


def probability_matrix(rows: Sequence[Mapping[Any, Any]], universe: Sequence[Any], n_examples: int) -> np.ndarray:
    """(n_examples, K) probabilities; column i is universe label i for i < len(universe)."""
    if isinstance(rows, str | bytes | Mapping) or not hasattr(rows, "__len__"):
        raise MetricInputError("probabilities must be a list with one object per example", FIELD)
    if len(rows) != n_examples:
        raise MetricInputError(f"probabilities has {len(rows)} rows but there are {n_examples} examples", FIELD)
    if not isinstance(rows[0], Mapping):
        raise MetricInputError("probabilities[0] must be an object mapping each label to its probability", FIELD)
    names = _columns(rows[0], universe)
    index = {name: j for j, name in enumerate(names)}
    return np.array([_row(values, i, index, len(names)) for i, values in enumerate(rows)], dtype=np.float64)
