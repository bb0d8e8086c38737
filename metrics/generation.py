"""Corpus BLEU, chrF and TER equal to sacrebleu's, ROUGE equal to rouge-score's and exact match, with
sentence scores and bootstrap intervals.

Point scores go through sacrebleu's own ``_compute_score_from_stats`` on the summed per-segment
statistics, so they are sacrebleu's numbers. ROUGE and exact match are means over segments (ROUGE:
of rouge-score's per-segment F-measure), so their summed statistics give them directly. Bootstrap
resamples and sentence scores need thousands of scores at once: ``bleu_arrays``, ``chrf_scores`` and
``ter_scores`` replay sacrebleu's formulas over a leading batch axis in numpy, in the same
floating-point operation order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU

from metrics.bootstrap import Interval, make_rng, percentile_interval, resampled_sums
from metrics.errors import MetricInputError
from metrics.exact_match import ExactMatchSpec
from metrics.generation_stats import (
    BleuSpec,
    ChrfSpec,
    MetricSpec,
    References,
    TerSpec,
    check_tokenizer,
    extract_statistics,
    num_refs,
    resolve_workers,
    run_tasks,
    signature,
)
from metrics.options import check_confidence_level, check_metric_names, check_resamples, check_seed
from metrics.rouge import ROUGE_TYPES, RougeSpec, check_rouge_options

METRICS = ("bleu", "chrf", "ter", *ROUGE_TYPES, "exact_match")
SENTENCE_BLEU_WARNING = (
    "sentence-level BLEU correlates poorly with human judgement: BLEU tracks it at the corpus level only "
    "(Koehn); use chrF for sentence scores"
)
CHRF_WORD_ORDERS = (0, 2)
# Bootstrap resamples per task: fixed, so results do not depend on the worker count.
RESAMPLE_BLOCK = 250
# Below this many example-resample cells, resampling inline beats shipping statistics to workers.
PARALLEL_RESAMPLE_CELLS = 20_000_000

ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MetricScore:
    name: str
    score: float
    signature: str
    precisions: list[float] | None = None
    bp: float | None = None
    sys_len: int | None = None
    ref_len: int | None = None
    sentence_scores: list[float] | None = None
    interval: Interval | None = None
    precision: float | None = None
    recall: float | None = None
    warnings: list[str] | None = None


@dataclass(frozen=True)
class MeanScore:
    """A metric that is 100 x the mean of a per-segment value; ROUGE also reports mean precision and recall."""

    name: str
    score: float
    precision: float | None = None
    recall: float | None = None


@dataclass(frozen=True)
class BleuArrays:
    score: np.ndarray
    precisions: np.ndarray
    bp: np.ndarray


def _my_log(values: np.ndarray) -> np.ndarray:
    """sacrebleu.utils.my_log: log, with log(0) floored to -9999999999."""
    with np.errstate(divide="ignore"):
        return np.where(values == 0.0, -9999999999.0, np.log(values))


def bleu_arrays(stats: np.ndarray, spec: BleuSpec) -> BleuArrays:
    """``BLEU.compute_bleu`` over rows of summed statistics ``[sys_len, ref_len, correct.., total..]``."""
    s = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    order = spec.max_ngram_order
    sys_len, ref_len = s[:, 0], s[:, 1]
    correct, total = s[:, 2 : 2 + order].copy(), s[:, 2 + order : 2 + 2 * order].copy()
    method = spec.smooth_method
    default = BLEU.SMOOTH_DEFAULTS[method]
    smooth_value = float(spec.smooth_value if spec.smooth_value is not None else default or 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        no_match = ~correct.any(axis=1)
        precisions = np.zeros_like(correct)
        alive = np.ones(len(s), dtype=bool)  # sacrebleu stops at the first order with no n-grams
        eff_order = np.full(len(s), float(order))
        smooth_mteval = np.ones(len(s))
        for k in range(order):
            if method == "add-k" and k > 0:
                correct[:, k] += smooth_value
                total[:, k] += smooth_value
            alive &= total[:, k] != 0
            if spec.effective_order:
                eff_order = np.where(alive, k + 1.0, eff_order)
            zero = correct[:, k] == 0
            if method == "exp":
                smooth_mteval = np.where(alive & zero, smooth_mteval * 2, smooth_mteval)
                smoothed = 100.0 / (smooth_mteval * total[:, k])
            elif method == "floor":
                smoothed = 100.0 * smooth_value / total[:, k]
            else:
                smoothed = np.zeros(len(s))
            value = np.where(zero, smoothed, 100.0 * correct[:, k] / total[:, k])
            precisions[:, k] = np.where(alive, value, 0.0)
        log_sum = np.zeros(len(s))
        for k in range(order):
            log_sum = log_sum + np.where(k < eff_order, _my_log(precisions[:, k]), 0.0)
        score = bp * np.exp(log_sum / eff_order)
    precisions[no_match] = 0.0
    return BleuArrays(np.where(no_match, 0.0, score), precisions, bp)


def chrf_scores(stats: np.ndarray, spec: ChrfSpec) -> np.ndarray:
    """``CHRF._compute_f_score`` over rows of summed ``[hyp, ref, match]`` triples per order."""
    s = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    eps = 1e-16
    factor = spec.beta**2
    order = spec.char_order + spec.word_order
    score = np.zeros(len(s))
    avg_prec, avg_rec, effective = np.zeros(len(s)), np.zeros(len(s)), np.zeros(len(s))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            n_hyp, n_ref, n_match = s[:, 3 * i], s[:, 3 * i + 1], s[:, 3 * i + 2]
            prec = np.where(n_hyp > 0, n_match / n_hyp, eps)
            rec = np.where(n_ref > 0, n_match / n_ref, eps)
            denom = factor * prec + rec
            score = score + np.where(denom > 0, (1 + factor) * prec * rec / denom, eps)
            both = (n_hyp > 0) & (n_ref > 0)
            avg_prec = avg_prec + np.where(both, prec, 0.0)
            avg_rec = avg_rec + np.where(both, rec, 0.0)
            effective += both
        if spec.eps_smoothing:
            return 100 * score / order
        avg_prec = np.where(effective == 0, 0.0, avg_prec / effective)
        avg_rec = np.where(effective == 0, 0.0, avg_rec / effective)
        f_score = (1 + factor) * avg_prec * avg_rec
        f_score = f_score / ((factor * avg_prec) + avg_rec)
        return np.where(avg_prec + avg_rec != 0, 100 * f_score, 0.0)


def ter_scores(stats: np.ndarray) -> np.ndarray:
    """``TER._compute_score_from_stats`` over rows of summed ``[edits, reference length]``."""
    s = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    edits, ref_length = s[:, 0], s[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(ref_length > 0, edits / ref_length, np.where(edits > 0, 1.0, 0.0))
    return 100 * fraction


def mean_scores(sums: np.ndarray, column: int) -> np.ndarray:
    """100 x column / count over rows of summed ``[count, ...]`` statistics."""
    s = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100 * s[:, column] / s[:, 0]


def score_function(spec: MetricSpec) -> ScoreFn:
    """Summed statistics (m, width) -> scores (m,), for resampling."""
    if isinstance(spec, RougeSpec | ExactMatchSpec):
        return lambda stats: mean_scores(stats, 1)
    if isinstance(spec, BleuSpec):
        return lambda stats: bleu_arrays(stats, spec).score
    if isinstance(spec, ChrfSpec):
        return lambda stats: chrf_scores(stats, spec)
    return ter_scores


def sentence_spec(spec: MetricSpec) -> MetricSpec:
    """Sentence BLEU uses effective order, as ``sacrebleu.sentence_bleu`` does; chrF and TER are unchanged."""
    return replace(spec, effective_order=True) if isinstance(spec, BleuSpec) else spec


def corpus_totals(stats: np.ndarray) -> list[Any]:
    """Column sums as Python numbers, exact for integer statistics, for sacrebleu's scorer."""
    dtype = np.int64 if np.issubdtype(stats.dtype, np.integer) else np.float64
    return stats.sum(axis=0, dtype=dtype).tolist()


def point_score(spec: MetricSpec, stats: np.ndarray) -> Any:
    """sacrebleu's own Score object from per-segment statistics (n, width); a MeanScore for ROUGE and exact match."""
    if isinstance(spec, RougeSpec):
        sums = stats.sum(axis=0, dtype=np.float64)[None]
        f, precision, recall = (float(mean_scores(sums, column)[0]) for column in (1, 2, 3))
        return MeanScore(spec.rouge_type, f, precision, recall)
    if isinstance(spec, ExactMatchSpec):
        return MeanScore(spec.name, float(mean_scores(stats.sum(axis=0, dtype=np.float64)[None], 1)[0]))
    return spec.build()._compute_score_from_stats(corpus_totals(stats))


# -- inputs -------------------------------------------------------------------------


def check_segments(values: Any, field: str, max_segments: int | None) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise MetricInputError(f"{field} must be a list of strings", field)
    if len(values) == 0:
        raise MetricInputError(f"{field} is empty", field)
    if max_segments is not None and len(values) > max_segments:
        raise MetricInputError(f"{field} has {len(values)} segments; the limit is {max_segments}", field)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise MetricInputError(f"{field}[{i}] is {type(value).__name__}, not a string", field)
    return list(values)


def check_references(references: Any, n: int) -> References:
    """Per-example reference lists from ``str | list[str]`` entries, one entry per hypothesis."""
    field = "references"
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise MetricInputError("references must be a list with one entry per hypothesis", field)
    if len(references) != n:
        raise MetricInputError(f"got {len(references)} references for {n} hypotheses", field)
    out = []
    for i, entry in enumerate(references):
        if isinstance(entry, str):
            out.append([entry])
            continue
        if not isinstance(entry, Sequence) or len(entry) == 0:
            raise MetricInputError(f"references[{i}] must be a string or a non-empty list of strings", field)
        if not all(isinstance(ref, str) for ref in entry):
            raise MetricInputError(f"references[{i}] holds a non-string reference", field)
        out.append(list(entry))
    return out


def metric_specs(
    names: Sequence[str],
    tokenize: str,
    lowercase: bool,
    chrf_word_order: int,
    rouge_stemmer: bool = False,
    rouge_tokenize: str = "default",
) -> list[MetricSpec]:
    """sacrebleu's default settings for each metric; TER keeps its defaults (case-insensitive). ROUGE takes
    rouge-score's options; ``lowercase`` also lowercases exact match and the whitespace ROUGE tokenizer."""
    if not isinstance(tokenize, str):
        raise MetricInputError("tokenize must be a tokenizer name", "tokenize")
    check_tokenizer(tokenize)
    if not isinstance(lowercase, bool):
        raise MetricInputError("lowercase must be a boolean", "lowercase")
    if isinstance(chrf_word_order, bool) or chrf_word_order not in CHRF_WORD_ORDERS:
        raise MetricInputError("chrf_word_order must be 0 (chrF) or 2 (chrF++)", "chrf_word_order")
    check_rouge_options(rouge_tokenize, rouge_stemmer)
    by_name: dict[str, MetricSpec] = {
        "bleu": BleuSpec(tokenize=tokenize, lowercase=lowercase),
        "chrf": ChrfSpec(word_order=chrf_word_order, lowercase=lowercase),
        "ter": TerSpec(),
        "exact_match": ExactMatchSpec(lowercase=lowercase),
    }
    for rouge_type in ROUGE_TYPES:
        by_name[rouge_type] = RougeSpec(rouge_type, rouge_stemmer, rouge_tokenize, lowercase)
    return [by_name[name] for name in names]


# -- report -----------------------------------------------------------------------------------


def _metric_score(
    spec: MetricSpec,
    stats: np.ndarray,
    sig: str,
    sentence_level: bool,
    interval: Interval | None,
) -> MetricScore:
    score = point_score(spec, stats)
    sentences = score_function(sentence_spec(spec))(stats).tolist() if sentence_level else None
    if isinstance(score, MeanScore):
        return MetricScore(
            score.name,
            score.score,
            sig,
            sentence_scores=sentences,
            interval=interval,
            precision=score.precision,
            recall=score.recall,
        )
    if isinstance(spec, BleuSpec):
        return MetricScore(
            score.name,
            float(score.score),
            sig,
            precisions=[float(p) for p in score.precisions],
            bp=float(score.bp),
            sys_len=int(score.sys_len),
            ref_len=int(score.ref_len),
            sentence_scores=sentences,
            interval=interval,
            warnings=[SENTENCE_BLEU_WARNING] if sentence_level else None,
        )
    return MetricScore(score.name, float(score.score), sig, sentence_scores=sentences, interval=interval)


def bootstrap_sums(stats: np.ndarray, n_resamples: int, seed: int | None, workers: int) -> np.ndarray:
    """``resampled_sums`` in fixed blocks with spawned generators, run on the worker pool when large.

    The blocks do not depend on the worker count, so a seed gives the same resamples everywhere.
    """
    sizes = [min(RESAMPLE_BLOCK, n_resamples - start) for start in range(0, n_resamples, RESAMPLE_BLOCK)]
    tasks = [(stats, size, rng) for size, rng in zip(sizes, make_rng(seed).spawn(len(sizes)), strict=True)]
    inline = stats.shape[0] * n_resamples < PARALLEL_RESAMPLE_CELLS
    return np.concatenate(run_tasks(resampled_sums, tasks, workers, inline=inline), axis=0)


def scored_width(spec: MetricSpec) -> int:
    """The leading statistic columns a metric's score depends on; the rest feed point estimates only."""
    return spec.scored_width if isinstance(spec, RougeSpec | ExactMatchSpec) else spec.width


def bootstrap_intervals(
    specs: Sequence[MetricSpec],
    stats: Sequence[np.ndarray],
    n_resamples: int,
    seed: int | None,
    level: float,
    workers: int,
) -> list[Interval]:
    """Percentile intervals from one set of resamples shared by all metrics (their scored columns side by side)."""
    widths = np.cumsum([0] + [scored_width(spec) for spec in specs])
    scored = [stat[:, : scored_width(spec)] for spec, stat in zip(specs, stats, strict=True)]
    sums = bootstrap_sums(np.hstack(scored), n_resamples, seed, workers)
    return [
        percentile_interval(score_function(spec)(sums[:, start:stop]), level)
        for spec, start, stop in zip(specs, widths[:-1], widths[1:], strict=True)
    ]


def generation_report(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    metrics: Sequence[str] = ("bleu",),
    tokenize: str = "13a",
    lowercase: bool = False,
    chrf_word_order: int = 0,
    rouge_stemmer: bool = False,
    rouge_tokenize: str = "default",
    sentence_level: bool = False,
    confidence_level: float = 0.95,
    n_resamples: int = 0,
    seed: int | None = 0,
    workers: int | None = None,
    max_segments: int | None = None,
    max_resamples: int | None = None,
) -> dict[str, MetricScore]:
    """Corpus scores keyed by requested metric name, each with sacrebleu's signature.

    ``n_resamples > 0`` adds a percentile bootstrap interval (the signature then carries ``bs`` and
    ``seed`` as sacrebleu's does); ``sentence_level`` adds per-segment scores (and, for BLEU, a warning).
    """
    hyps = check_segments(hypotheses, "hypotheses", max_segments)
    refs = check_references(references, len(hyps))
    names = check_metric_names(metrics, METRICS)
    specs = metric_specs(names, tokenize, lowercase, chrf_word_order, rouge_stemmer, rouge_tokenize)
    n_resamples = check_resamples(n_resamples, max_resamples, minimum=0)
    level = check_confidence_level(confidence_level)
    seed = check_seed(seed)
    workers = resolve_workers(workers)

    stats = [array[0] for array in extract_statistics(specs, [hyps], refs, workers=workers)]
    extra = {"bs": n_resamples, "seed": str(seed).lower()} if n_resamples else None
    sigs = [signature(spec, num_refs(refs), extra) for spec in specs]
    intervals: list[Interval | None] = (
        list(bootstrap_intervals(specs, stats, n_resamples, seed, level, workers))
        if n_resamples
        else [None] * len(specs)
    )
    return {
        name: _metric_score(spec, stat, sig, sentence_level, interval)
        for name, spec, stat, sig, interval in zip(names, specs, stats, sigs, intervals, strict=True)
    }


def generation_draws(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    metrics: Sequence[str],
    n_resamples: int,
    seed: int | None,
    workers: int | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Corpus scores (default sacrebleu options) and their values on ``n_resamples`` bootstrap resamples.

    For comparisons between independent samples (an unpaired bootstrap), each side resampled on its own.
    """
    hyps = check_segments(hypotheses, "hypotheses", None)
    refs = check_references(references, len(hyps))
    names = check_metric_names(metrics, METRICS)
    specs = metric_specs(names, "13a", False, 0)
    workers = resolve_workers(workers)
    stats = [array[0] for array in extract_statistics(specs, [hyps], refs, workers=workers)]
    widths = np.cumsum([0] + [spec.width for spec in specs])
    sums = bootstrap_sums(np.hstack(stats), n_resamples, check_seed(seed), workers)
    point = {name: float(point_score(spec, stat).score) for name, spec, stat in zip(names, specs, stats, strict=True)}
    draws = {
        name: score_function(spec)(sums[:, start:stop])
        for name, spec, start, stop in zip(names, specs, widths[:-1], widths[1:], strict=True)
    }
    return point, draws
