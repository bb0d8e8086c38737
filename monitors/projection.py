"""Embeddings made small enough to log, and the fixed projection a drift reference fits on them.

Every prediction's pooled embedding is multiplied by one seeded Gaussian matrix (a Johnson–Lindenstrauss
sketch), so the log holds a few numbers per row whatever the model's width, and sketches logged before
and after a reference was chosen are comparable. A reference then fits a PCA on its own sketches; that
projection is stored with it and applied, unchanged, to every window checked against it.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

SKETCH_DIM = 16
SKETCH_SEED = 20240607
SKETCH_DECIMALS = 4


class EmbeddingSketch:
    """Maps ``(n, hidden)`` pooled embeddings to ``(n, SKETCH_DIM)``; the matrix depends only on ``hidden``."""

    def __init__(self, hidden: int, dim: int = SKETCH_DIM) -> None:
        rng = np.random.default_rng(SKETCH_SEED)
        self._matrix = (rng.standard_normal((hidden, dim)) / np.sqrt(dim)).astype(np.float32)

    def __call__(self, pooled: np.ndarray) -> list[list[float]]:
        sketch = np.asarray(pooled, dtype=np.float32) @ self._matrix
        return [[float(v) for v in row] for row in np.round(sketch, SKETCH_DECIMALS)]


@dataclass(frozen=True)
class Projection:
    """Centre and principal axes of a reference's sketches."""

    mean: np.ndarray
    components: np.ndarray
    """``(k, SKETCH_DIM)``, rows ordered by explained variance, signs fixed so the largest loading is positive."""

    @classmethod
    def fit(cls, sketches: np.ndarray, n_components: int) -> "Projection":
        data = np.asarray(sketches, dtype=np.float64)
        mean = data.mean(axis=0)
        _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
        components = vt[: min(n_components, vt.shape[0])]
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        return cls(mean, components * signs[:, None])

    def transform(self, sketches: np.ndarray) -> np.ndarray:
        return (np.asarray(sketches, dtype=np.float64) - self.mean) @ self.components.T

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Projection":
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["components"], dtype=np.float64))
