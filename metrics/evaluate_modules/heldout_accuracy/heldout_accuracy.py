"""heldout accuracy (subset accuracy for multilabel) as an offline `evaluate` module."""

from typing import Any

import evaluate

import metrics.evaluate_modules._classification_common as common
from metrics.classification import classification_report


class HeldoutAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info("accuracy", "Share of examples whose prediction equals the reference.")

    def _compute(self, predictions: list[Any], references: list[Any], **options: Any) -> dict[str, Any]:
        kept = {k: v for k, v in options.items() if k not in common.ACCURACY_IGNORES}
        return {"accuracy": classification_report(predictions, references, **kept).accuracy}
