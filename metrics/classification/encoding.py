"""Reading and validating label inputs, and encoding them jointly as indices into one label universe.

Inputs hold one label per example (int, str or bool) or one list of labels per example (multilabel).
The universe lists the report labels first (``labels`` in the given order, else every present label
sorted, as scikit-learn orders them), then the other present labels sorted.
"""

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.errors import MetricInputError

# Bounds the K x K confusion matrix (and the multilabel indicator width) a request may build.
MAX_LABELS = 2048

# Labels per example: a list (JSON) or a 1-D numpy array; multilabel data is a list of label lists.
Examples = Sequence[Any] | np.ndarray

_LIST_TYPES = (list, tuple, np.ndarray)


def _label_kind(types: set[type], field_name: str) -> str | None:
    """The label kind ("int", "str" or "bool") of some element types; raises on None, other types, a mix."""
    if type(None) in types:
        raise MetricInputError(f"{field_name} contains null labels", field_name)
    kinds = set()
    for t in types:
        if issubclass(t, bool | np.bool_):
            kinds.add("bool")
        elif issubclass(t, int | np.integer):
            kinds.add("int")
        elif issubclass(t, str):
            kinds.add("str")
        else:
            raise MetricInputError(
                f"{field_name} has a label of type {t.__name__}; labels must be int, str or bool", field_name
            )
    if len(kinds) > 1:
        raise MetricInputError(f"{field_name} mixes label types {sorted(kinds)}", field_name)
    return kinds.pop() if kinds else None


@dataclass(frozen=True)
class _Column:
    """One validated input: single-label values, or multilabel values flattened with per-example lengths."""

    kind: str | None
    values: np.ndarray | list[Any]
    lengths: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        return len(self.values) if self.lengths is None else len(self.lengths)


def _as_values(values: Sequence[Any], kind: str | None, field_name: str) -> np.ndarray | list[Any]:
    if kind == "str" or kind is None:
        return list(values)
    if kind == "int":
        try:  # class ids in 0..255, the common case, convert at C speed, twice as fast as np.fromiter
            return np.frombuffer(bytes(values), dtype=np.uint8)
        except ValueError:
            pass
    try:
        return np.fromiter(values, dtype=np.int64 if kind == "int" else np.bool_, count=len(values))
    except OverflowError as exc:
        raise MetricInputError(f"{field_name}: integer labels must fit in 64 bits", field_name) from exc


def _read(data: Any, field_name: str) -> _Column:
    if isinstance(data, str | bytes) or not hasattr(data, "__len__"):
        raise MetricInputError(f"{field_name} must be a list of labels", field_name)
    if isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "iub":
        if data.dtype.kind == "b":
            return _Column("bool", data)
        if data.dtype == np.uint64 and data.size and data.max() > np.iinfo(np.int64).max:
            raise MetricInputError("integer labels must fit in 64 bits", field_name)
        return _Column("int", data.astype(np.int64, copy=False))
    items = data.tolist() if isinstance(data, np.ndarray) else data
    types = set(map(type, items))
    nested = {t for t in types if issubclass(t, _LIST_TYPES)}
    if not nested:
        kind = _label_kind(types, field_name)
        return _Column(kind, _as_values(items, kind, field_name))
    if nested != types:
        raise MetricInputError(f"{field_name} mixes single labels and label lists (multilabel examples)", field_name)
    flat = list(itertools.chain.from_iterable(items))
    kind = _label_kind(set(map(type, flat)), field_name)
    lengths = np.fromiter(map(len, items), dtype=np.intp, count=len(items))
    return _Column(kind, _as_values(flat, kind, field_name), lengths)


def _common_kind(columns: Mapping[str, _Column]) -> str | None:
    kinds = {name: c.kind for name, c in columns.items() if c.kind is not None}
    if len(set(kinds.values())) > 1:
        detail = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise MetricInputError(f"label types differ between inputs ({detail})", next(iter(columns)))
    return next(iter(kinds.values()), None)


def _check_labels_param(labels: Sequence[Any], kind: str | None) -> list[Any]:
    if isinstance(labels, str | bytes) or len(labels) == 0:
        raise MetricInputError("labels must be a non-empty list", "labels")
    values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    labels_kind = _label_kind(set(map(type, values)), "labels")
    if kind is not None and labels_kind != kind:
        raise MetricInputError(f"labels are {labels_kind} but the data labels are {kind}", "labels")
    if len(set(values)) != len(values):
        raise MetricInputError("labels contains duplicates", "labels")
    return values


def _present_codes(parts: Sequence[np.ndarray | list[Any]], kind: str | None) -> tuple[list[Any], list[np.ndarray]]:
    """Sorted distinct labels over all parts, and each part as indices into them."""
    if kind == "str" or kind is None:
        present = sorted(set().union(*parts))
        index = {label: i for i, label in enumerate(present)}
        lookup = index.__getitem__
        return present, [np.fromiter(map(lookup, p), dtype=np.intp, count=len(p)) for p in parts]
    sizes = np.cumsum([len(p) for p in parts])[:-1]
    both = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if both.size == 0:
        return [], [np.zeros(0, np.intp) for _ in parts]
    lo, hi = int(both.min()), int(both.max())
    if hi - lo <= 2 * both.size + 1024:
        # Dense range: a lookup table is O(n), far faster than np.unique's sort.
        offsets = both - lo
        occupied = np.bincount(offsets, minlength=hi - lo + 1) > 0
        codes = offsets if occupied.all() else (np.cumsum(occupied) - 1)[offsets]
        values = np.flatnonzero(occupied) + lo
    else:
        values, codes = np.unique(both, return_inverse=True)
    present = [bool(v) for v in values] if kind == "bool" else values.tolist()
    return present, np.split(codes.astype(np.intp, copy=False), sizes)


def _universe(present: list[Any], labels: list[Any] | None) -> tuple[list[Any], np.ndarray | None]:
    """Label universe with the report labels first, and the map from present-label index into it.

    Report labels are ``labels`` in the given order, else every present label sorted (sklearn's order).
    Present labels outside ``labels`` follow, sorted: they still count in accuracy and sums.
    """
    if labels is None:
        return present, None
    chosen = set(labels)
    universe = labels + [label for label in present if label not in chosen]
    index = {label: i for i, label in enumerate(universe)}
    return universe, np.array([index[label] for label in present], dtype=np.intp)


def _check_lengths(columns: Mapping[str, _Column]) -> None:
    (first, column), *rest = columns.items()
    for name, other in rest:
        if other.n_examples != column.n_examples:
            raise MetricInputError(f"{first} has {column.n_examples} examples but {name} has {other.n_examples}", first)
    if column.n_examples == 0:
        raise MetricInputError(f"{first} is empty; at least one example is required", first)


def _check_shapes(columns: Mapping[str, _Column]) -> None:
    (first, column), *rest = columns.items()
    for name, other in rest:
        if (other.lengths is None) != (column.lengths is None):
            raise MetricInputError(f"{first} and {name} must both be single labels or both label lists", first)


@dataclass(frozen=True)
class Encoded:
    """Inputs as int indices into one label universe, ready for a joint ``np.bincount``."""

    universe: list[Any]
    n_report: int  # the first n_report universe labels are the ones scores are reported for
    codes: dict[str, np.ndarray]  # per input: one index per label occurrence
    lengths: dict[str, np.ndarray] | None  # per multilabel input: labels per example; None for single-label

    @property
    def n_examples(self) -> int:
        name, codes = next(iter(self.codes.items()))
        return len(codes) if self.lengths is None else len(self.lengths[name])

    def indicator(self, name: str) -> np.ndarray:
        """(n_examples, len(universe)) boolean membership matrix of a multilabel input."""
        if self.lengths is None:
            raise ValueError("indicator matrices exist for multilabel inputs only")
        return indicator(self.codes[name], self.lengths[name], len(self.universe))


def indicator(codes: np.ndarray, lengths: np.ndarray, n_labels: int) -> np.ndarray:
    """(len(lengths), n_labels) membership matrix from flattened label indices and per-example counts."""
    matrix = np.zeros((len(lengths), n_labels), dtype=bool)
    matrix[np.repeat(np.arange(len(lengths)), lengths), codes] = True
    return matrix


def encode(columns: Mapping[str, Examples], labels: Sequence[Any] | None = None) -> Encoded:
    """Validate equally long inputs of one shape and label type, and encode them jointly.

    Keys name the inputs in errors; the first is the one blamed for a length or shape mismatch.
    """
    read = {name: _read(data, name) for name, data in columns.items()}
    _check_lengths(read)
    _check_shapes(read)
    kind = _common_kind(read)
    chosen = None if labels is None else _check_labels_param(labels, kind)
    present, codes = _present_codes([c.values for c in read.values()], kind)
    universe, remap = _universe(present, chosen)
    if len(universe) > MAX_LABELS:
        raise MetricInputError(f"{len(universe)} distinct labels; at most {MAX_LABELS} are supported", "labels")
    lengths = {name: c.lengths for name, c in read.items() if c.lengths is not None}
    return Encoded(
        universe=universe,
        n_report=len(present) if chosen is None else len(chosen),
        codes={name: c if remap is None else remap[c] for name, c in zip(read, codes, strict=True)},
        lengths=lengths or None,
    )


def label_codes(
    columns: Mapping[str, Examples], labels: Sequence[Any] | None = None
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """``encode`` for single-label inputs only: the universe and each input's indices into it."""
    encoded = encode(columns, labels)
    if encoded.lengths is not None:
        name = next(iter(encoded.lengths))
        raise MetricInputError(f"{name} holds label lists; expected one label per example", name)
    return encoded.universe, encoded.codes
