"""What the heldout_bleu/chrf/ter evaluate modules share: declared inputs and the call into the core.

The Hub's sacrebleu-based modules drop the signature that says how a score was computed; these
return it, computed by ``metrics.generation.generation_report`` exactly as the service does.
"""

from dataclasses import asdict
from typing import Any

import datasets
import evaluate

from metrics.generation import generation_report

# Several references per prediction first, then a single reference string.
FEATURES = [
    datasets.Features(
        {
            "predictions": datasets.Value("string", id="sequence"),
            "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
        }
    ),
    datasets.Features(
        {
            "predictions": datasets.Value("string", id="sequence"),
            "references": datasets.Value("string", id="sequence"),
        }
    ),
]

COMMON_ARGS = """\
    predictions: list of hypothesis strings.
    references: one reference string, or a list of reference strings, per prediction.
    sentence_level: also return per-segment scores.
    n_resamples: bootstrap resamples for a percentile interval (0: none).
    confidence_level: interval level.
    seed: bootstrap seed.
    workers: processes for statistics extraction (default: all CPUs).
"""


def metric_info(description: str, citation: str, extra_args: str, returns: str) -> evaluate.MetricInfo:
    inputs = f"Args:\n{COMMON_ARGS}{extra_args}Returns:\n    {returns}\n"
    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs, features=FEATURES)


def compute(metric: str, predictions: list[str], references: list[str] | list[list[str]], **options: Any) -> dict:
    score = generation_report(predictions, references, metrics=(metric,), **options)[metric]
    return {key: value for key, value in asdict(score).items() if value is not None}
