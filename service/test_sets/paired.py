"""Paired significance tests between two prediction lists on one set: for the ladder and for compare.

Single-label classification and generation go through ``metrics.significance`` (the code behind
``/v1/metrics/compare``). Multilabel sets, which it does not cover, get the same paired bootstrap
here over per-example count rows: [1, exact match, tp per label, predicted per label, true per label]
(or per-example precision, recall and F1 for ``average="samples"``), grouped into distinct rows.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from metrics.bootstrap import make_rng, percentile_interval
from metrics.classification import classification_report, prf_from_counts
from metrics.generation import ScoreFn
from metrics.significance import (
    TESTS,
    PairedResult,
    approximate_randomization,
    compare_classification,
    compare_generation,
    paired_bootstrap,
)
from service.tasks import Task
from service.test_sets.scoring import CONFIDENCE_LEVEL, SEED, SetTargets, classification_options


def _indicator(rows: Sequence[Sequence[Any]], index: dict[Any, int]) -> np.ndarray:
    """(n, L) membership of each example's label list in the set's labels; other labels are dropped."""
    matrix = np.zeros((len(rows), len(index)), dtype=np.float64)
    for i, row in enumerate(rows):
        for label in row:
            j = index.get(label)
            if j is not None:
                matrix[i, j] = 1.0
    return matrix


def multilabel_rows(
    predictions: Sequence[Sequence[Any]], references: Sequence[Sequence[Any]], labels: list[Any], average: str
) -> np.ndarray:
    index = {label: j for j, label in enumerate(labels)}
    pred, true = _indicator(predictions, index), _indicator(references, index)
    exact = np.array([sorted(map(str, p)) == sorted(map(str, r)) for p, r in zip(predictions, references, strict=True)])
    ones = np.ones((len(pred), 1))
    hits = pred * true
    if average == "samples":
        per = prf_from_counts(hits.sum(1), pred.sum(1), true.sum(1), None, 0)
        return np.column_stack([ones, exact, per["precision"], per["recall"], per["f1"]])
    return np.hstack([ones, exact[:, None], hits, pred, true])


def multilabel_score_fn(metric: str, n_labels: int, average: str) -> ScoreFn:
    def score(sums: np.ndarray) -> np.ndarray:
        sums = np.atleast_2d(sums)
        n = sums[:, 0]
        if metric == "accuracy":
            return np.asarray(sums[:, 1] / n)
        if average == "samples":
            column = {"precision": 2, "recall": 3, "f1": 4}[metric]
            return np.asarray(sums[:, column] / n)
        tp, pred, true = (sums[:, 2 + k * n_labels : 2 + (k + 1) * n_labels] for k in range(3))
        return np.asarray(prf_from_counts(tp, pred, true, average, 0)[metric], dtype=np.float64)

    return score


def _compare_multilabel(
    target: SetTargets,
    baseline: list[Any],
    candidate: list[Any],
    metrics: Sequence[str],
    test: str,
    n_resamples: int,
    seed: int | None,
) -> dict[str, PairedResult]:
    labels = target.labels or []
    average = target.config.average or "macro"
    base_rows = multilabel_rows(baseline, target.targets, labels, average)
    cand_rows = multilabel_rows(candidate, target.targets, labels, average)
    distinct, multiplicity = np.unique(np.hstack([base_rows, cand_rows]), axis=0, return_counts=True)
    width = base_rows.shape[1]
    options = classification_options(target)
    reports = [classification_report(system, target.targets, **options) for system in (baseline, candidate)]
    run_test = paired_bootstrap if test == "paired_bootstrap" else approximate_randomization
    results = {}
    for metric in metrics:
        score_fn = multilabel_score_fn(metric, len(labels), average)
        outcome = run_test(
            distinct[:, :width], distinct[:, width:], score_fn, n_resamples, make_rng(seed), multiplicity=multiplicity
        )
        base_score, cand_score = (float(getattr(r, metric)) for r in reports)
        results[metric] = PairedResult(
            metric=metric,
            baseline=base_score,
            candidate=cand_score,
            delta=cand_score - base_score,
            p_value=outcome.p_value,
            candidate_interval=percentile_interval(outcome.samples[:, 1], CONFIDENCE_LEVEL),
            baseline_interval=percentile_interval(outcome.samples[:, 0], CONFIDENCE_LEVEL),
            test=test,
            n_resamples=n_resamples,
            signature=f"average:{average}|test:{TESTS[test]}|n:{n_resamples}|seed:{str(seed).lower()}",
        )
    return results


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
        return compare_generation(target.targets, baseline, candidate, workers=workers, **options)
    if target.multilabel:
        return _compare_multilabel(target, baseline, candidate, metrics, test, n_resamples, seed)
    return compare_classification(target.targets, baseline, candidate, **options, **classification_options(target))
