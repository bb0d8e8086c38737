"""Paired significance tests between two prediction lists on one set: for the ladder and for compare.

The set's fixed options go to ``metrics.significance`` (the code behind ``/v1/metrics/compare``),
which covers generation and single-label and multilabel classification alike.
"""

from collections.abc import Sequence
from typing import Any

from metrics.significance import PairedResult, compare_classification, compare_generation
from service.tasks import Task
from service.test_sets.scoring import CONFIDENCE_LEVEL, SEED, SetTargets, classification_options, generation_options


def compare(
    target: SetTargets,
    baseline: list[Any],
    candidate: list[Any],
    *,
    metrics: Sequence[str],
    test: str = "paired_bootstrap",
    n_resamples: int,
    seed: int | None = SEED,
    workers: int | None = None,
) -> dict[str, PairedResult]:
    """Paired test per metric of ``candidate`` against ``baseline`` (both normalised, in set order)."""
    options: dict[str, Any] = {
        "metrics": metrics,
        "test": test,
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence_level": CONFIDENCE_LEVEL,
    }
    if target.task is Task.generation:
        return compare_generation(
            target.targets, baseline, candidate, workers=workers, **options, **generation_options(target)
        )
    return compare_classification(target.targets, baseline, candidate, **options, **classification_options(target))
