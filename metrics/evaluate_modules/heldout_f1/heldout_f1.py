"""heldout f1 as an offline `evaluate` module."""

from typing import Any

import evaluate

import metrics.evaluate_modules._classification_common as common
from metrics.classification import classification_report


class HeldoutF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info("f1", "F1: harmonic mean of precision and recall.")

    def _compute(self, predictions: list[Any], references: list[Any], **options: Any) -> dict[str, Any]:
        return {"f1": classification_report(predictions, references, **options).f1}
