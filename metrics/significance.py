"""Paired significance tests between a baseline and a candidate, on per-example sufficient statistics.

The tests follow ``sacrebleu.significance`` (paired bootstrap as in Moses'
bootstrap-hypothesis-difference-significance.pl, approximate randomization as in multeval) and its
p-value ``(count + 1) / (n + 1)``, but they resample statistics with matrix products and score all
resamples in one vectorised call instead of one sacrebleu call per resample. Unweighted draws use
the same generator calls as sacrebleu, so with its seed (12345) and one chunk the resamples are its own.

The primitives only need per-example statistic rows and a vectorised ``score_fn``, so classification
metrics (confusion-matrix rows, with ``multiplicity`` for grouped identical examples) reuse them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.bootstrap import CHUNK_CELLS, Interval, make_rng, percentile_interval, resampled_sums
from metrics.cancel import checkpoint
from metrics.classification import classification_report, label_codes, scores_from_confusion
from metrics.errors import MetricInputError
from metrics.generation import (
    ScoreFn,
    check_confidence_level,
    check_metric_names,
    check_references,
    check_resamples,
    check_seed,
    check_segments,
    metric_specs,
    point_score,
    score_function,
)
from metrics.generation_stats import extract_statistics, num_refs, resolve_workers, signature

TESTS = {"paired_bootstrap": "bs", "approximate_randomization": "ar"}


@dataclass(frozen=True)
class PairedTestOutcome:
    """Scores on the full data, the p-value, and per-resample scores as (n_resamples, 2) columns.

    For the paired bootstrap the columns are the resampled baseline and candidate; for approximate
    randomization they are the two shuffled pseudo-systems.
    """

    baseline: float
    candidate: float
    p_value: float
    samples: np.ndarray


@dataclass(frozen=True)
class PairedResult:
    metric: str
    baseline: float
    candidate: float
    delta: float
    p_value: float
    candidate_interval: Interval
    baseline_interval: Interval
    test: str
    n_resamples: int
    signature: str


def p_value(null_statistics: np.ndarray, observed: float) -> float:
    """sacrebleu's ``(#{null > observed} + 1) / (n + 1)``, over resamples whose score is defined.

    A zero observed difference gives 1: sacrebleu's strict ``>`` would call two identical systems
    significantly different (p = 1 / (n + 1)).
    """
    values = np.asarray(null_statistics, dtype=np.float64)
    values = values[~np.isnan(values)]
    if np.isnan(observed):
        return float("nan")
    if observed == 0:
        return 1.0
    return (int(np.count_nonzero(values > observed)) + 1) / (values.size + 1)


def _paired_rows(
    base_stats: np.ndarray, cand_stats: np.ndarray, multiplicity: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    base = np.asarray(base_stats, dtype=np.float64)
    cand = np.asarray(cand_stats, dtype=np.float64)
    base, cand = (base[:, None], cand[:, None]) if base.ndim == 1 else (base, cand)
    if base.shape != cand.shape or base.ndim != 2 or len(base) == 0:
        raise MetricInputError(
            "baseline and candidate need statistics of the same non-empty shape", "candidate"
        )
    if multiplicity is None:
        return base, cand, None
    weights = np.asarray(multiplicity)
    if weights.shape != (len(base),) or not np.issubdtype(weights.dtype, np.integer) or (weights < 0).any():
        raise MetricInputError("multiplicity must hold one non-negative integer per row", "multiplicity")
    if weights.sum() == 0:
        raise MetricInputError("multiplicity must not be all zero", "multiplicity")
    return base, cand, weights.astype(np.int64)


def _weighted_resampled_sums(
    stats: np.ndarray, weights: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap of sum(weights) examples where row i stands for weights[i] of them: multinomial over rows."""
    total = int(weights.sum())
    rows = max(1, CHUNK_CELLS // len(stats))
    parts = []
    for start in range(0, n_resamples, rows):
        checkpoint()
        draws = rng.multinomial(total, weights / total, size=min(rows, n_resamples - start))
        parts.append(draws.astype(np.float64) @ stats)
    return np.concatenate(parts, axis=0)


def _observed(
    base: np.ndarray, cand: np.ndarray, weights: np.ndarray | None, score_fn: ScoreFn
) -> np.ndarray:
    w = np.ones(len(base)) if weights is None else weights.astype(np.float64)
    return np.asarray(score_fn(np.stack([w @ base, w @ cand])), dtype=np.float64)


def paired_bootstrap(
    base_stats: np.ndarray,
    cand_stats: np.ndarray,
    score_fn: ScoreFn,
    n_resamples: int,
    rng: np.random.Generator,
    multiplicity: np.ndarray | None = None,
) -> PairedTestOutcome:
    """sacrebleu's paired bootstrap: both systems scored on the same resamples of the examples.

    The null distribution is the resampled |delta| centred on its mean; p counts how often it
    exceeds the observed |delta|.
    """
    base, cand, weights = _paired_rows(base_stats, cand_stats, multiplicity)
    observed = _observed(base, cand, weights, score_fn)
    both = np.hstack([base, cand])
    sums = (
        resampled_sums(both, n_resamples, rng)
        if weights is None
        else _weighted_resampled_sums(both, weights, n_resamples, rng)
    )
    width = base.shape[1]
    samples = np.column_stack([score_fn(sums[:, :width]), score_fn(sums[:, width:])])
    diffs = np.abs(samples[:, 1] - samples[:, 0])
    diffs = diffs[~np.isnan(diffs)]
    centred = diffs - diffs.mean() if diffs.size else diffs
    p = p_value(centred, abs(float(observed[1] - observed[0])))
    return PairedTestOutcome(float(observed[0]), float(observed[1]), p, samples)


def _swap_counts(
    n_rows: int, weights: np.ndarray | None, n_trials: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """(rows, n_rows) counts of each row's examples kept on the baseline side in each shuffle."""
    rows = max(1, CHUNK_CELLS // n_rows)
    for start in range(0, n_trials, rows):
        checkpoint()
        size = (min(rows, n_trials - start), n_rows)
        if weights is None:
            yield rng.integers(2, size=size, dtype=bool).astype(np.float64)
        else:
            yield rng.binomial(weights, 0.5, size=size).astype(np.float64)


def approximate_randomization(
    base_stats: np.ndarray,
    cand_stats: np.ndarray,
    score_fn: ScoreFn,
    n_resamples: int,
    rng: np.random.Generator,
    multiplicity: np.ndarray | None = None,
) -> PairedTestOutcome:
    """sacrebleu's approximate randomization: swap each example's two outputs with probability 1/2.

    With ``multiplicity`` a row's examples swap independently: Binomial(multiplicity, 1/2) of them.
    """
    base, cand, weights = _paired_rows(base_stats, cand_stats, multiplicity)
    observed = _observed(base, cand, weights, score_fn)
    w = np.ones(len(base)) if weights is None else weights.astype(np.float64)
    both = np.hstack([base, cand])
    width = base.shape[1]
    parts = []
    for kept in _swap_counts(len(base), weights, n_resamples, rng):
        on_a, on_b = kept @ both, (w - kept) @ both
        parts.append(
            np.column_stack(
                [
                    score_fn(on_a[:, :width] + on_b[:, width:]),
                    score_fn(on_b[:, :width] + on_a[:, width:]),
                ]
            )
        )
    samples = np.concatenate(parts, axis=0)
    p = p_value(np.abs(samples[:, 0] - samples[:, 1]), abs(float(observed[1] - observed[0])))
    return PairedTestOutcome(float(observed[0]), float(observed[1]), p, samples)


def compare_generation(
    references: Sequence[str | Sequence[str]],
    baseline: Sequence[str],
    candidate: Sequence[str],
    *,
    metrics: Sequence[str] = ("bleu",),
    test: str = "paired_bootstrap",
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence_level: float = 0.95,
    tokenize: str = "13a",
    lowercase: bool = False,
    chrf_word_order: int = 0,
    workers: int | None = None,
    max_segments: int | None = None,
    max_resamples: int | None = None,
) -> dict[str, PairedResult]:
    """Paired test of candidate against baseline per metric, keyed by requested metric name.

    Every metric uses the same resamples (the generator restarts from ``seed`` per metric, as sacrebleu
    draws once for all metrics). Intervals are percentile intervals of bootstrap resamples: the test's
    own for the paired bootstrap, a separate bootstrap after the shuffles for approximate randomization.
    """
    base_hyps = check_segments(baseline, "baseline", max_segments)
    cand_hyps = check_segments(candidate, "candidate", max_segments)
    if len(cand_hyps) != len(base_hyps):
        raise MetricInputError(
            f"got {len(cand_hyps)} candidate segments for {len(base_hyps)} baseline", "candidate"
        )
    refs = check_references(references, len(base_hyps))
    names = check_metric_names(metrics)
    specs = metric_specs(names, tokenize, lowercase, chrf_word_order)
    if test not in TESTS:
        raise MetricInputError(f"unknown test {test!r}; use {', '.join(TESTS)}", "test")
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=1)
    level = check_confidence_level(confidence_level)
    seed = check_seed(seed)
    workers = resolve_workers(workers)

    all_stats = extract_statistics(specs, [base_hyps, cand_hyps], refs, workers=workers)
    run_test = paired_bootstrap if test == "paired_bootstrap" else approximate_randomization
    results = {}
    for name, spec, stats in zip(names, specs, all_stats, strict=True):
        rng = make_rng(seed)
        score_fn = score_function(spec)
        outcome = run_test(stats[0], stats[1], score_fn, n_resamples, rng)
        if test == "paired_bootstrap":
            base_samples, cand_samples = outcome.samples[:, 0], outcome.samples[:, 1]
        else:
            sums = resampled_sums(np.hstack([stats[0], stats[1]]), n_resamples, rng)
            base_samples, cand_samples = score_fn(sums[:, : spec.width]), score_fn(sums[:, spec.width :])
        base_score, cand_score = point_score(spec, stats[0]), point_score(spec, stats[1])
        extra: dict[str, object] = {"seed": str(seed).lower(), TESTS[test]: n_resamples}
        if test == "approximate_randomization":
            extra["bs"] = n_resamples  # the interval's bootstrap, as sacrebleu's n_ar_confidence
        sig = signature(spec, num_refs(refs), extra)
        results[name] = PairedResult(
            metric=cand_score.name,
            baseline=float(base_score.score),
            candidate=float(cand_score.score),
            delta=float(cand_score.score - base_score.score),
            p_value=outcome.p_value,
            candidate_interval=percentile_interval(cand_samples, level),
            baseline_interval=percentile_interval(base_samples, level),
            test=test,
            n_resamples=n_resamples,
            signature=sig,
        )
    return results


CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")


def _classification_score_fn(
    metric: str, k: int, average: str, label_indices: np.ndarray, pos_index: int | None, zero_division: float | str
) -> ScoreFn:
    def score(summed: np.ndarray) -> np.ndarray:
        scores = scores_from_confusion(
            np.asarray(summed).reshape(-1, k, k),
            average,
            label_indices=None if average == "binary" else label_indices,
            pos_index=pos_index,
            zero_division=zero_division,
        )
        return np.asarray(scores[metric], dtype=np.float64)

    return score


def compare_classification(
    references: Sequence[Any],
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    *,
    metrics: Sequence[str] = ("accuracy", "f1"),
    average: str | None = "macro",
    labels: Sequence[Any] | None = None,
    pos_label: str | int = 1,
    zero_division: float | str = 0,
    test: str = "paired_bootstrap",
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence_level: float = 0.95,
    max_resamples: int | None = None,
) -> dict[str, PairedResult]:
    """Paired test of two classifiers on the same references, exact and cheap at any size.

    Examples are grouped by their (reference, baseline, candidate) cell: at most K³ rows, each with
    its count as ``multiplicity``, so resampling a million examples costs no more than a thousand.
    Point scores come from ``classification_report``, so they follow scikit-learn's rules exactly.
    """
    if average is None:
        raise MetricInputError("a paired test needs one score per metric; choose an average", "average")
    unknown = [m for m in metrics if m not in CLASSIFICATION_METRICS]
    if unknown or not metrics:
        raise MetricInputError(f"unknown metrics {unknown}; use {', '.join(CLASSIFICATION_METRICS)}", "metrics")
    if test not in TESTS:
        raise MetricInputError(f"unknown test {test!r}; use {', '.join(TESTS)}", "test")
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=1)
    level = check_confidence_level(confidence_level)
    seed = check_seed(seed)
    universe, codes = label_codes({"references": references, "baseline": baseline, "candidate": candidate}, labels)
    options = {"average": average, "labels": labels, "pos_label": pos_label, "zero_division": zero_division}
    reports = {
        name: classification_report(system, references, **options)  # type: ignore[arg-type]
        for name, system in (("baseline", baseline), ("candidate", candidate))
    }
    k = len(universe) + (1 if average == "binary" and pos_label not in universe else 0)
    pos_index = (universe.index(pos_label) if pos_label in universe else len(universe)) if average == "binary" else None
    scored = np.arange(len(labels) if labels is not None else len(universe))

    true, base, cand = codes["references"], codes["baseline"], codes["candidate"]
    joint = np.bincount((true * k + base) * k + cand, minlength=k**3)
    cells = np.flatnonzero(joint)
    t, b, c = cells // (k * k), (cells // k) % k, cells % k
    base_stats = np.zeros((len(cells), k * k))
    cand_stats = np.zeros((len(cells), k * k))
    rows = np.arange(len(cells))
    base_stats[rows, t * k + b] = 1.0
    cand_stats[rows, t * k + c] = 1.0

    run_test = paired_bootstrap if test == "paired_bootstrap" else approximate_randomization
    results = {}
    for metric in metrics:
        score_fn = _classification_score_fn(metric, k, average, scored, pos_index, zero_division)
        rng = make_rng(seed)
        outcome = run_test(base_stats, cand_stats, score_fn, n_resamples, rng, multiplicity=joint[cells])
        if test == "paired_bootstrap":
            base_samples, cand_samples = outcome.samples[:, 0], outcome.samples[:, 1]
        else:
            sums = _weighted_resampled_sums(np.hstack([base_stats, cand_stats]), joint[cells], n_resamples, rng)
            base_samples, cand_samples = score_fn(sums[:, : k * k]), score_fn(sums[:, k * k :])
        base_score = float(getattr(reports["baseline"], metric))
        cand_score = float(getattr(reports["candidate"], metric))
        results[metric] = PairedResult(
            metric=metric,
            baseline=base_score,
            candidate=cand_score,
            delta=cand_score - base_score,
            p_value=outcome.p_value,
            candidate_interval=percentile_interval(cand_samples, level),
            baseline_interval=percentile_interval(base_samples, level),
            test=test,
            n_resamples=n_resamples,
            signature=f"average:{average}|test:{TESTS[test]}|n:{n_resamples}|seed:{str(seed).lower()}",
        )
    return results
