"""Drift of a window of traffic against a reference, computed by Evidently 0.7, with every method pinned.

Left to itself Evidently picks p-value tests up to 1,000 rows and distances above, so windows of
different sizes would not be comparable; here each column's method and threshold are fixed by
configuration. The text domain classifier and the embedding drift train models, so each works on a
seeded sample of bounded size. Evidently takes seconds to import: it is imported inside
``run_drift`` only, which the service runs in a worker process or thread, never on its event loop.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from monitors.drift_config import (
    ALL_COLUMNS,
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    TEXT_COLUMNS,
    ColumnDrift,
    DriftConfig,
)
from monitors.drift_features import FeatureTable
from monitors.projection import Projection

if TYPE_CHECKING:
    import pandas as pd

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
