"""heldout precision as an offline `evaluate` module."""

from typing import Any

import evaluate

import metrics.evaluate_modules._classification_common as common
from metrics.classification import classification_report


class HeldoutPrecision(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info("precision", "Precision: tp / (tp + fp).")

    def _compute(self, predictions: list[Any], references: list[Any], **options: Any) -> dict[str, Any]:
        return {"precision": classification_report(predictions, references, **options).precision}
