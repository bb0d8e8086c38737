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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from metrics.bootstrap import CHUNK_CELLS, Interval, make_rng, percentile_interval, resampled_sums
from metrics.cancel import checkpoint
from metrics.classification.counts import unique_rows
from metrics.classification.encoding import Encoded, Examples, encode
from metrics.classification.report import SCORE_NAMES, classification_report
from metrics.classification.scores import divide, prf_from_counts, scores_from_confusion, zero_division_value
from metrics.errors import MetricInputError
from metrics.generation import (
    METRICS,
    ScoreFn,
    check_references,
    check_segments,
    metric_specs,
    point_score,
    score_function,
)
from metrics.generation_stats import extract_statistics, num_refs, resolve_workers, signature
from metrics.options import check_confidence_level, check_metric_names, check_resamples, check_seed

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
        raise MetricInputError("baseline and candidate need statistics of the same non-empty shape", "candidate")
    if multiplicity is None:
        return base, cand, None
    weights = np.asarray(multiplicity)
    if weights.shape != (len(base),) or not np.issubdtype(weights.dtype, np.integer) or (weights < 0).any():
        raise MetricInputError("multiplicity must hold one non-negative integer per row", "multiplicity")
    if weights.sum() == 0:
        raise MetricInputError("multiplicity must not be all zero", "multiplicity")
    return base, cand, weights.astype(np.int64)


def _observed(base: np.ndarray, cand: np.ndarray, weights: np.ndarray | None, score_fn: ScoreFn) -> np.ndarray:
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
    sums = resampled_sums(both, n_resamples, rng, weights)
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


def _check_test(test: Any) -> str:
    if test not in TESTS:
        raise MetricInputError(f"unknown test {test!r}; use {', '.join(TESTS)}", "test")
    return str(test)


def _run_test(
    test: str,
    base: np.ndarray,
    cand: np.ndarray,
    score_fn: ScoreFn,
    n_resamples: int,
    seed: int | None,
    multiplicity: np.ndarray | None = None,
) -> tuple[PairedTestOutcome, np.ndarray, np.ndarray]:
    """The test's outcome, and the bootstrap scores of baseline and candidate its intervals come from.

    The paired bootstrap's own resamples serve; approximate randomization gets a separate bootstrap
    from the same generator after its shuffles (sacrebleu's ``n_ar_confidence``).
    """
    rng = make_rng(seed)
    run = paired_bootstrap if test == "paired_bootstrap" else approximate_randomization
    outcome = run(base, cand, score_fn, n_resamples, rng, multiplicity)
    if test == "paired_bootstrap":
        return outcome, outcome.samples[:, 0], outcome.samples[:, 1]
    width = base.shape[1]
    sums = resampled_sums(np.hstack([base, cand]), n_resamples, rng, multiplicity)
    return outcome, score_fn(sums[:, :width]), score_fn(sums[:, width:])


def _paired_result(
    metric: str,
    base_score: float,
    cand_score: float,
    tested: tuple[PairedTestOutcome, np.ndarray, np.ndarray],
    test: str,
    level: float,
    sig: str,
) -> PairedResult:
    outcome, base_samples, cand_samples = tested
    return PairedResult(
        metric=metric,
        baseline=base_score,
        candidate=cand_score,
        delta=cand_score - base_score,
        p_value=outcome.p_value,
        candidate_interval=percentile_interval(cand_samples, level),
        baseline_interval=percentile_interval(base_samples, level),
        test=test,
        n_resamples=len(outcome.samples),
        signature=sig,
    )


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
    rouge_stemmer: bool = False,
    rouge_tokenize: str = "default",
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
        raise MetricInputError(f"got {len(cand_hyps)} candidate segments for {len(base_hyps)} baseline", "candidate")
    refs = check_references(references, len(base_hyps))
    names = check_metric_names(metrics, METRICS)
    specs = metric_specs(names, tokenize, lowercase, chrf_word_order, rouge_stemmer, rouge_tokenize)
    test = _check_test(test)
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=1)
    level = check_confidence_level(confidence_level)
    seed = check_seed(seed)
    workers = resolve_workers(workers)

    all_stats = extract_statistics(specs, [base_hyps, cand_hyps], refs, workers=workers)
    extra: dict[str, object] = {"seed": str(seed).lower(), TESTS[test]: n_resamples}
    if test == "approximate_randomization":
        extra["bs"] = n_resamples  # the interval's bootstrap, as sacrebleu's n_ar_confidence
    results = {}
    for name, spec, stats in zip(names, specs, all_stats, strict=True):
        base_score, cand_score = point_score(spec, stats[0]), point_score(spec, stats[1])
        tested = _run_test(test, stats[0], stats[1], score_function(spec), n_resamples, seed)
        sig = signature(spec, num_refs(refs), extra)
        results[name] = _paired_result(
            cand_score.name, float(base_score.score), float(cand_score.score), tested, test, level, sig
        )
    return results


# -- classification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PairedTable:
    """A paired classification test's distinct example rows: each system's statistics and the row counts."""

    base: np.ndarray
    cand: np.ndarray
    multiplicity: np.ndarray
    score_fn: Callable[[str], ScoreFn]  # metric name -> summed rows -> scores


def _confusion_score_fn(
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


def _single_label_table(encoded: Encoded, average: str, pos_label: Any, zero_division: float | str) -> _PairedTable:
    """One row per distinct (reference, baseline, candidate) cell, at most K³: one-hot confusion cells."""
    universe = encoded.universe
    binary = average == "binary"
    k = len(universe) + (1 if binary and pos_label not in universe else 0)
    pos_index = (universe.index(pos_label) if pos_label in universe else len(universe)) if binary else None
    scored = np.arange(encoded.n_report)
    true, base, cand = (encoded.codes[name] for name in ("references", "baseline", "candidate"))
    joint = np.bincount((true * k + base) * k + cand, minlength=k**3)
    cells = np.flatnonzero(joint)
    t, b, c = cells // (k * k), (cells // k) % k, cells % k
    rows = np.arange(len(cells))
    base_stats = np.zeros((len(cells), k * k))
    cand_stats = np.zeros((len(cells), k * k))
    base_stats[rows, t * k + b] = 1.0
    cand_stats[rows, t * k + c] = 1.0
    score_fn = partial(
        _confusion_score_fn,
        k=k,
        average=average,
        label_indices=scored,
        pos_index=pos_index,
        zero_division=zero_division,
    )
    return _PairedTable(base_stats, cand_stats, joint[cells], score_fn)


def multilabel_statistics(
    true: np.ndarray, pred: np.ndarray, scored: np.ndarray, average: str, zero_division: float
) -> np.ndarray:
    """Per-example rows (from (n, L) indicators) whose column sums give the multilabel scores.

    [1, exact match, then tp, predicted and true per scored label]; for ``average="samples"`` the
    example's precision, recall and F1 (0 where undefined) and whether each is defined instead.
    """
    true_scored, pred_scored = true[:, scored], pred[:, scored]
    hits = true_scored & pred_scored
    ones = np.ones((len(true), 1))
    exact = np.all(true == pred, axis=1)[:, None]
    if average == "samples":
        per = prf_from_counts(hits.sum(1), pred_scored.sum(1), true_scored.sum(1), None, zero_division)
        values = np.column_stack([per[name] for name in ("precision", "recall", "f1")])
        defined = ~np.isnan(values)
        return np.hstack([ones, exact, np.where(defined, values, 0.0), defined])
    return np.hstack([ones, exact, hits, pred_scored, true_scored]).astype(np.float64)


def multilabel_score_fn(metric: str, n_scored: int, average: str, zero_division: float) -> ScoreFn:
    """Summed ``multilabel_statistics`` rows (m, width) -> the metric's scores (m,)."""
    def score(sums: np.ndarray) -> np.ndarray:
        sums = np.atleast_2d(sums)
        if metric == "accuracy":
            return np.asarray(sums[:, 1] / sums[:, 0])
        if average == "samples":
            column = ("precision", "recall", "f1").index(metric)
            return divide(sums[:, 2 + column], sums[:, 5 + column], float("nan"))
        tp, pred, true = (sums[:, 2 + i * n_scored : 2 + (i + 1) * n_scored] for i in range(3))
        return np.asarray(prf_from_counts(tp, pred, true, average, zero_division)[metric], dtype=np.float64)

    return score


def _multilabel_table(encoded: Encoded, average: str, zero_division: float | str) -> _PairedTable:
    """``multilabel_statistics`` rows per distinct example, grouped from the distinct label-set triples."""
    zd = zero_division_value(zero_division)
    scored = np.arange(encoded.n_report)
    width = len(encoded.universe)
    triples, counts = unique_rows(
        np.concatenate([encoded.indicator(name) for name in ("references", "baseline", "candidate")], axis=1)
    )
    true, base, cand = triples[:, :width], triples[:, width : 2 * width], triples[:, 2 * width :]
    both = np.hstack([multilabel_statistics(true, pred, scored, average, zd) for pred in (base, cand)])
    distinct, inverse = np.unique(both, axis=0, return_inverse=True)
    multiplicity = np.bincount(inverse.ravel(), weights=counts, minlength=len(distinct)).astype(np.int64)
    half = both.shape[1] // 2
    score_fn = partial(multilabel_score_fn, n_scored=len(scored), average=average, zero_division=zd)
    return _PairedTable(distinct[:, :half], distinct[:, half:], multiplicity, score_fn)


def compare_classification(
    references: Examples,
    baseline: Examples,
    candidate: Examples,
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
    """Paired test of two classifiers on the same references, single-label or multilabel, exact at any size.

    Examples are grouped into distinct rows of summable statistics, each with its count as
    ``multiplicity`` (single-label: one-hot confusion cells per (reference, baseline, candidate) cell;
    multilabel: ``multilabel_statistics``), so resampling a million examples costs no more than a
    thousand. Point scores come from ``classification_report``, so they follow scikit-learn exactly.
    """
    if average is None:
        raise MetricInputError("a paired test needs one score per metric; choose an average", "average")
    names = check_metric_names(metrics, SCORE_NAMES)
    test = _check_test(test)
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=1)
    level = check_confidence_level(confidence_level)
    seed = check_seed(seed)
    encoded = encode({"references": references, "baseline": baseline, "candidate": candidate}, labels)
    base_report, cand_report = (
        classification_report(
            system, references, average=average, labels=labels, pos_label=pos_label, zero_division=zero_division
        )
        for system in (baseline, candidate)
    )
    table = (
        _single_label_table(encoded, average, pos_label, zero_division)
        if encoded.lengths is None
        else _multilabel_table(encoded, average, zero_division)
    )
    sig = f"average:{average}|test:{TESTS[test]}|n:{n_resamples}|seed:{str(seed).lower()}"
    results = {}
    for metric in names:
        tested = _run_test(test, table.base, table.cand, table.score_fn(metric), n_resamples, seed, table.multiplicity)
        base_score, cand_score = float(getattr(base_report, metric)), float(getattr(cand_report, metric))
        results[metric] = _paired_result(metric, base_score, cand_score, tested, test, level, sig)
    return results
