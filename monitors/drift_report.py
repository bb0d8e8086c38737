"""The Evidently side of a drift check. Importing this module imports Evidently (seconds): only
``monitors.drift.run_drift`` does, inside a worker.

Per-column drift is Evidently's ValueDrift with the configured method and threshold. Embedding drift
is one more Evidently metric defined here, because Evidently's own EmbeddingsDrift also renders a t-SNE
map that takes minutes: this one runs the same embedding drift methods on a bounded sample of the
projected embeddings and renders a counter.

The report shows logged texts ("characteristic examples"), which are user input: ``report_html`` makes
them inert before the report is stored.
"""

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValue, SingleValueCalculation, SingleValueMetric
from evidently.core.report import Context, Snapshot
from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
    DistanceDriftMethod,
    DriftMethod,
    MMDDriftMethod,
    ModelDriftMethod,
    RatioDriftMethod,
)
from evidently.legacy.renderers.html_widgets import CounterData, counter
from evidently.metrics import ValueDrift
from sklearn.feature_extraction.text import TfidfVectorizer

from monitors.drift_config import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, TEXT_COLUMNS, ColumnDrift, DriftConfig

# Below this many rows per side a domain classifier's ROC AUC is noise.
MIN_MODEL_ROWS = 20
# Evidently's standalone page opens its data block so, in <head>, before any user data.
_DATA_BLOCK = re.compile(r"<script>\n\s*var (metric_[0-9a-f]+) = ")
# In JSON these occur only inside strings, where the \u escapes decode to the same characters.
_INERT_JSON = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _embedding_method(name: str, threshold: float) -> DriftMethod:
    methods: dict[str, Callable[..., DriftMethod]] = {
        "model": ModelDriftMethod,
        "distance": DistanceDriftMethod,
        "mmd": MMDDriftMethod,
        "ratio": RatioDriftMethod,
    }
    return methods[name](threshold=threshold)


class EmbeddingDrift(SingleValueMetric):
    """Drift of the projected embeddings; the value is the method's score (ROC AUC for ``model``)."""

    columns: list[str]
    method: str
    threshold: float
    sample: int
    seed: int


class EmbeddingDriftCalculation(SingleValueCalculation[EmbeddingDrift]):
    def calculate(self, context: Context, current_data: Dataset, reference_data: Dataset | None) -> SingleValue:
        assert reference_data is not None
        metric = self.metric
        samples = []
        for data in (reference_data, current_data):
            frame = data.as_dataframe()[metric.columns].dropna()
            size = min(len(frame), metric.sample)
            samples.append(frame.sample(size, random_state=metric.seed).reset_index(drop=True))
        reference, current = samples
        score, drifted, _ = _embedding_method(metric.method, metric.threshold)(current, reference)
        result = self.result(float(score))
        verdict = "detected" if drifted else "not detected"
        result.widget = [
            counter(
                counters=[
                    CounterData(
                        f"Drift {verdict}. Method: {metric.method}. Score: {score:.3f} (threshold {metric.threshold}). "
                        f"Rows: {len(reference)} reference, {len(current)} current.",
                        "Embedding drift (projected embeddings)",
                    )
                ]
            )
        ]
        return result

    def display_name(self) -> str:
        return "Embedding drift"


def _texts_usable(frame: pd.DataFrame, reference: pd.DataFrame) -> bool:
    """Evidently's text classifier fails on too few texts or a vocabulary that its filters empty."""
    current_texts = frame["text"].dropna()
    reference_texts = reference["text"].dropna()
    if min(len(current_texts), len(reference_texts)) < MIN_MODEL_ROWS:
        return False
    vectorizer = TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")
    try:
        vectorizer.fit(pd.concat([current_texts, reference_texts]))
    except ValueError:
        return False
    return True


def _embeddings_usable(frame: pd.DataFrame, reference: pd.DataFrame, names: list[str]) -> bool:
    return bool(names) and min(len(frame[names].dropna()), len(reference[names].dropna())) >= MIN_MODEL_ROWS


def usable_columns(columns: list[str], current: pd.DataFrame, reference: pd.DataFrame, names: list[str]) -> list[str]:
    """Columns a model-based method cannot score on this data are left out rather than failing the check."""
    kept = []
    for column in columns:
        if column in TEXT_COLUMNS and not _texts_usable(current, reference):
            continue
        if column == "embedding" and not _embeddings_usable(current, reference, names):
            continue
        kept.append(column)
    return kept


def build_report(
    columns: list[str], config: DriftConfig, embedding_names: list[str]
) -> tuple[Report, Callable[[pd.DataFrame], Dataset]]:
    metrics: list[Any] = []
    for column in columns:
        if column == "embedding":
            metrics.append(
                EmbeddingDrift(
                    columns=embedding_names,
                    method=config.method(column),
                    threshold=config.threshold(column),
                    sample=config.embedding_sample,
                    seed=config.seed,
                )
            )
        else:
            metrics.append(ValueDrift(column=column, method=config.method(column), threshold=config.threshold(column)))
    embeddings = embedding_names if "embedding" in columns else []
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c in NUMERIC_COLUMNS] + embeddings,
        categorical_columns=[c for c in columns if c in CATEGORICAL_COLUMNS],
        text_columns=[c for c in columns if c in TEXT_COLUMNS],
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        return Dataset.from_pandas(frame, data_definition=definition)

    return Report(metrics, include_tests=True), dataset


def read_results(snapshot: Snapshot, columns: list[str], config: DriftConfig) -> list[ColumnDrift]:
    """Scores from the metrics; verdicts from Evidently's own tests (p-values drift below, distances above)."""
    data = snapshot.dict()
    failed = {t["metric_config"]["metric_id"] for t in data["tests"] if getattr(t["status"], "value", None) == "FAIL"}
    by_column: dict[str, ColumnDrift] = {}
    for metric in data["metrics"]:
        conf = metric["config"]
        column = conf.get("column", "embedding")
        score = float(metric["value"])
        threshold = config.threshold(column)
        drifted = score > threshold if column == "embedding" else metric["id"] in failed
        by_column[column] = ColumnDrift(column, config.method(column), threshold, score, drifted)
    return [by_column[c] for c in columns if c in by_column]


def report_html(snapshot: Snapshot) -> str:
    """Evidently's standalone HTML with its embedded JSON made inert.

    Evidently writes that JSON raw inside a ``<script>``, so a logged text holding ``</script>`` would end the
    script and run as markup (stored XSS). The JSON has no raw newline, so the block ends at the first
    ``\\n</script>`` after its opening; within it every ``<``, ``>`` and ``&`` becomes its ``\\u`` escape.
    """
    html = snapshot.get_html_str(as_iframe=False)
    opening = _DATA_BLOCK.search(html)
    end = html.find("\n</script>", opening.end()) if opening is not None else -1
    if opening is None or end < 0:
        raise RuntimeError("unexpected Evidently report layout: no embedded data block to escape")
    return html[: opening.end()] + html[opening.end() : end].translate(_INERT_JSON) + html[end:]
