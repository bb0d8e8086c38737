"""An evaluation's generalization gap: the model on the set's kept training sample against the blind set.

Both sides are scored with the set's options; the gap per metric is training minus blind-set score with an
unpaired bootstrap interval (``metrics.generalization``). Overfitting is judged on the set's headline
metric, in its better direction and on a 0-1 scale, against HELDOUT_OVERFITTING_GAP.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics.classification.report import score_draws
from metrics.generalization import overfits, unpaired_gap
from metrics.generation import generation_draws
from service.evaluations.errors import PredictionsIncomplete
from service.tasks import Task
from service.test_sets.config import LOWER_IS_BETTER, SCALE
from service.test_sets.scoring import CONFIDENCE_LEVEL, SEED, SetTargets, classification_options, normalize


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _draws(
    predictions: Sequence[Any], target: SetTargets, names: list[str], n_resamples: int, seed: int, workers: int | None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    if target.task is Task.classification:
        options = classification_options(target)
        point, draws = score_draws(predictions, target.targets, **options, n_resamples=n_resamples, seed=seed)
    else:
        point, draws = generation_draws(
            predictions, target.targets, metrics=names, n_resamples=n_resamples, seed=seed, workers=workers
        )
    return {n: point[n] for n in names}, {n: draws[n] for n in names}


def generalization(
    target: SetTargets,
    test_predictions: Sequence[Any],
    train_raw: Sequence[Any],
    train_targets: Sequence[Any],
    names: list[str],
    *,
    n_resamples: int,
    workers: int | None,
    margin: float,
) -> dict[str, Any]:
    """{train_metrics, gap: {metric: {value, low, high, level}}, overfitting, metric, train_size}."""
    if len(train_raw) != len(train_targets):
        raise PredictionsIncomplete(f"{len(train_raw)} predictions for {len(train_targets)} training records")
    train = dataclasses.replace(
        target, ids=[f"training-{i}" for i in range(len(train_targets))], targets=list(train_targets), groups=None
    )
    train_predictions = normalize(train_raw, train)
    resamples = max(n_resamples, 1)
    train_point, train_draws = _draws(train_predictions, train, names, resamples, SEED, workers)
    test_point, test_draws = _draws(test_predictions, target, names, resamples, SEED + 1, workers)
    gaps = unpaired_gap(train_point, train_draws, test_point, test_draws, CONFIDENCE_LEVEL)
    headline = target.config.ladder_metric if target.config.ladder_metric in names else names[0]
    verdict = overfits(gaps[headline], margin, SCALE.get(headline, 1.0), headline in LOWER_IS_BETTER)
    return {
        "train_metrics": {name: _finite(value) for name, value in train_point.items()},
        "gap": {
            name: {
                "value": _finite(gap.value),
                "low": _finite(gap.low) if n_resamples else None,
                "high": _finite(gap.high) if n_resamples else None,
                "level": gap.level,
            }
            for name, gap in gaps.items()
        },
        "overfitting": verdict if n_resamples else None,
        "metric": headline,
        "train_size": len(train_targets),
    }
