"""What a drift check compares: per-prediction features, in a columnar table a reference can store.

The column names are a fixed set, so they are safe Prometheus label values.
"""

import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

# The domain classifier needs a sentence's words, not a whole document; longer inputs are cut to this.
MAX_TEXT_CHARS = 2000


def classifier_log_features(
    n_chars: int, n_tokens: int, n_unknown: int, truncated: bool, embedding: list[float] | None
) -> dict[str, Any]:
    """The ``features`` a classifier's prediction log record carries."""
    features: dict[str, Any] = {
        "n_chars": n_chars,
        "n_tokens": n_tokens,
        "unk_share": round(n_unknown / n_tokens, 6) if n_tokens else 0.0,
        "truncated": truncated,
    }
    if embedding is not None:
        features["embedding"] = embedding
    return features


@dataclass(frozen=True)
class LoggedPrediction:
    features: dict[str, Any]
    label: str | None
    score: float | None
    text: str | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class FeatureTable:
    """One list per column, ``None`` where a prediction lacks the feature (e.g. no label for a generator)."""

    n_chars: list[float | None] = field(default_factory=list)
    n_tokens: list[float | None] = field(default_factory=list)
    unk_share: list[float | None] = field(default_factory=list)
    confidence: list[float | None] = field(default_factory=list)
    label: list[str | None] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    sketch: list[list[float] | None] = field(default_factory=list)

    @classmethod
    def from_predictions(cls, predictions: Iterable[LoggedPrediction]) -> "FeatureTable":
        table = cls()
        for p in predictions:
            table.n_chars.append(_number(p.features.get("n_chars")))
            table.n_tokens.append(_number(p.features.get("n_tokens")))
            table.unk_share.append(_number(p.features.get("unk_share")))
            table.confidence.append(p.score)
            table.label.append(p.label)
            table.text.append(p.text[:MAX_TEXT_CHARS] if p.text is not None else None)
            sketch = p.features.get("embedding")
            table.sketch.append(sketch if isinstance(sketch, list) and sketch else None)
        return table

    def __len__(self) -> int:
        return len(self.n_chars)

    def take(self, indices: Sequence[int]) -> "FeatureTable":
        return FeatureTable(**{f.name: [getattr(self, f.name)[i] for i in indices] for f in fields(self)})

    def present(self, column: str) -> bool:
        """Whether any row has this feature; absent columns are left out of a check."""
        values = self.sketch if column == "embedding" else getattr(self, column)
        return any(v is not None for v in values)

    def sketches(self) -> np.ndarray:
        rows = [s for s in self.sketch if s is not None]
        if not rows:
            return np.empty((0, 0))
        width = len(rows[0])
        return np.asarray([s for s in rows if len(s) == width], dtype=np.float64)

    def to_bytes(self) -> bytes:
        return gzip.compress(json.dumps({f.name: getattr(self, f.name) for f in fields(self)}).encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FeatureTable":
        return cls(**json.loads(gzip.decompress(data)))
