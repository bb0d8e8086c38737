"""Drift of a window of traffic against a reference, computed by Evidently 0.7, with every method pinned.

Left to itself Evidently picks p-value tests up to 1,000 rows and distances above, so windows of
different sizes would not be comparable; here each column's method and threshold are fixed by
configuration. The text domain classifier and the embedding drift train models, so each works on a
seeded sample of bounded size. Evidently takes seconds to import: it is imported inside
``run_drift`` only, which the service runs in a worker process or thread, never on its event loop.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from monitors.drift_features import (
    ALL_COLUMNS,
    CATEGORICAL_COLUMNS,
    EMBEDDING_COLUMNS,
    NUMERIC_COLUMNS,
    TEXT_COLUMNS,
    FeatureTable,
)
from monitors.projection import Projection

if TYPE_CHECKING:
    import pandas as pd

# Distances rather than p-values by default: a distance does not shrink towards "drift" as windows grow.
DEFAULT_METHODS: dict[str, str] = {
    "n_chars": "wasserstein",
    "n_tokens": "wasserstein",
    "unk_share": "wasserstein",
    "confidence": "wasserstein",
    "label": "jensenshannon",
    "text": "abs_text_content_drift",
    "embedding": "model",
}
DEFAULT_THRESHOLDS: dict[str, float] = {
    "n_chars": 0.1,
    "n_tokens": 0.1,
    "unk_share": 0.1,
    "confidence": 0.1,
    "label": 0.1,
    "text": 0.55,
    "embedding": 0.55,
}
# Evidently's registered tests by the column types they accept (tests/test_drift_unit.py checks this table).
NUMERIC_METHODS = frozenset(
    {
        "anderson",
        "cramer_von_mises",
        "ed",
        "es",
        "hellinger",
        "jensenshannon",
        "kl_div",
        "ks",
        "mannw",
        "empirical_mmd",
        "psi",
        "t_test",
        "wasserstein",
    }
)
CATEGORICAL_METHODS = frozenset(
    {"chisquare", "fisher_exact", "g_test", "hellinger", "jensenshannon", "kl_div", "psi", "TVD", "z"}
)
TEXT_METHODS = frozenset({"abs_text_content_drift", "perc_text_content_drift"})
EMBEDDING_METHODS = frozenset({"model", "distance", "mmd", "ratio"})


def allowed_methods(column: str) -> frozenset[str]:
    if column in NUMERIC_COLUMNS:
        return NUMERIC_METHODS
    if column in CATEGORICAL_COLUMNS:
        return CATEGORICAL_METHODS
    if column in TEXT_COLUMNS:
        return TEXT_METHODS
    if column in EMBEDDING_COLUMNS:
        return EMBEDDING_METHODS
    raise ValueError(f"unknown drift column {column!r}; columns are {', '.join(ALL_COLUMNS)}")


def check_overrides(methods: Mapping[str, str], thresholds: Mapping[str, float]) -> None:
    """Raise ValueError naming the first unknown column or method not valid for its column."""
    for column, method in methods.items():
        allowed = allowed_methods(column)
        if method not in allowed:
            raise ValueError(f"method {method!r} does not apply to column {column!r}; use one of {sorted(allowed)}")
    for column, threshold in thresholds.items():
        allowed_methods(column)
        if threshold < 0:
            raise ValueError(f"threshold for {column!r} must not be negative")


@dataclass(frozen=True)
class DriftConfig:
    methods: Mapping[str, str] = field(default_factory=dict)
    """Overrides of DEFAULT_METHODS, by column."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    """The dataset drifts when at least this share of its columns drift."""
    text_sample: int = 2000
    embedding_sample: int = 5000
    seed: int = 0

    def method(self, column: str) -> str:
        return self.methods.get(column, DEFAULT_METHODS[column])

    def threshold(self, column: str) -> float:
        return self.thresholds.get(column, DEFAULT_THRESHOLDS[column])


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftOutcome:
    columns: list[ColumnDrift]
    share_of_drifted_columns: float
    dataset_drift: bool
    html: str


class DriftInputError(ValueError):
    """The reference and window have no column in common, or one of them is empty."""


def compared_columns(reference: FeatureTable, current: FeatureTable) -> list[str]:
    return [c for c in ALL_COLUMNS if reference.present(c) and current.present(c)]


def _embedding_matrix(table: FeatureTable, projection: Projection) -> np.ndarray:
    width = projection.components.shape[1]
    out = np.full((len(table), projection.components.shape[0]), np.nan)
    rows = [i for i, s in enumerate(table.sketch) if s is not None and len(s) == width]
    if rows:
        out[rows] = projection.transform(np.asarray([table.sketch[i] for i in rows]))
    return out


def _text_sample(texts: list[str | None], size: int, rng: np.random.Generator) -> list[str | None]:
    """Texts outside a seeded sample are blanked; Evidently drops missing values before its test."""
    present = [i for i, t in enumerate(texts) if t]
    keep = set(rng.choice(present, size, replace=False).tolist()) if len(present) > size else set(present)
    return [t if i in keep else None for i, t in enumerate(texts)]


def embedding_names(n: int) -> list[str]:
    return [f"embedding_{i + 1}" for i in range(n)]


def _frame(
    table: FeatureTable, columns: list[str], projection: Projection | None, config: DriftConfig, salt: int
) -> "pd.DataFrame":
    import pandas as pd

    rng = np.random.default_rng([config.seed, salt])
    data: dict[str, Any] = {}
    for column in columns:
        if column in NUMERIC_COLUMNS:
            data[column] = np.asarray([np.nan if v is None else v for v in getattr(table, column)], dtype=np.float64)
        elif column in CATEGORICAL_COLUMNS:
            data[column] = pd.Series(table.label, dtype="object")
        elif column in TEXT_COLUMNS:
            data[column] = pd.Series(_text_sample(table.text, config.text_sample, rng), dtype="object")
        elif projection is not None:
            matrix = _embedding_matrix(table, projection)
            data.update({name: matrix[:, i] for i, name in enumerate(embedding_names(matrix.shape[1]))})
    return pd.DataFrame(data)


def run_drift(
    reference: FeatureTable,
    current: FeatureTable,
    projection: Projection | None,
    config: DriftConfig,
) -> DriftOutcome:
    """Evidently's per-column drift and HTML report; the embedding column needs the reference's projection."""
    if not len(reference) or not len(current):
        raise DriftInputError("the reference and the window must both have rows")
    columns = [c for c in compared_columns(reference, current) if c != "embedding" or projection is not None]
    if not columns:
        raise DriftInputError("the reference and the window have no feature in common")
    from monitors.drift_report import build_report, read_results, report_html, usable_columns

    names = embedding_names(projection.components.shape[0] if projection is not None else 0)
    ref_frame = _frame(reference, columns, projection, config, salt=1)
    cur_frame = _frame(current, columns, projection, config, salt=2)
    columns = usable_columns(columns, cur_frame, ref_frame, names)
    if not columns:
        raise DriftInputError("no feature has enough data in both the reference and the window")
    report, data_definition = build_report(columns, config, names)
    kept = [c for c in cur_frame.columns if c in columns or (c in names and "embedding" in columns)]
    snapshot = report.run(data_definition(cur_frame[kept]), data_definition(ref_frame[kept]))
    results = read_results(snapshot, columns, config)
    drifted = sum(r.drifted for r in results)
    share = drifted / len(results)
    return DriftOutcome(results, share, share >= config.drift_share, report_html(snapshot))
