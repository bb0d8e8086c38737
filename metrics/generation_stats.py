"""Per-segment sufficient statistics for BLEU, chrF and TER, extracted in parallel in bounded chunks.

sacrebleu scores a corpus from per-segment statistics, but extracts them in one process and builds
every reference's n-grams up front (chrF: gigabytes for 100k segments). Here each example's
references are processed, used and dropped one at a time, inside chunks of a few thousand segments
that run on a persistent process pool and come back as small numpy arrays. Scores are computed from
these statistics elsewhere (``metrics.generation``), as sacrebleu separates extraction from scoring.

chrF and TER statistics come from sacrebleu's own ``_extract_reference_info`` and
``_compute_segment_statistics``. BLEU keeps sacrebleu's tokenizers and closest-length rule but counts
n-grams with C-level ``Counter(zip(...))`` (its pure-Python n-gram loop is half of BLEU's time), and
13a/zh skip the regex replacement template whose per-match Python expansion dominates tokenization.
The tests check every statistic against sacrebleu's own methods.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from re import Match
from typing import Any, ClassVar, Protocol

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

from metrics.errors import MetricInputError

# Segments per task: large enough to amortise inter-process transfer, small enough to bound memory.
CHUNK_SEGMENTS = 5_000
# Below this many segments, process start and transfer cost more than they save.
INLINE_BELOW = 4_000

# BLEU tokenizers that work offline with sacrebleu's required dependencies; the rest need MeCab
# dictionaries or SentencePiece models downloaded at first use.
OFFLINE_TOKENIZERS = ("none", "zh", "13a", "intl", "char")

References = list[list[str]]


@dataclass(frozen=True)
class BleuSpec:
    """sacrebleu ``BLEU`` settings."""

    tokenize: str = "13a"
    lowercase: bool = False
    smooth_method: str = "exp"
    smooth_value: float | None = None
    max_ngram_order: int = 4
    effective_order: bool = False

    name: ClassVar[str] = "bleu"
    dtype: ClassVar[type] = np.int32

    @property
    def width(self) -> int:
        return 2 + 2 * self.max_ngram_order

    def build(self) -> BLEU:
        return BLEU(
            lowercase=self.lowercase,
            tokenize=self.tokenize,
            smooth_method=self.smooth_method,
            smooth_value=self.smooth_value,
            max_ngram_order=self.max_ngram_order,
            effective_order=self.effective_order,
        )


@dataclass(frozen=True)
class ChrfSpec:
    """sacrebleu ``CHRF`` settings (word_order=2 is chrF++)."""

    char_order: int = 6
    word_order: int = 0
    beta: int = 2
    lowercase: bool = False
    whitespace: bool = False
    eps_smoothing: bool = False

    name: ClassVar[str] = "chrf"
    dtype: ClassVar[type] = np.int32

    @property
    def width(self) -> int:
        return 3 * (self.char_order + self.word_order)

    def build(self) -> CHRF:
        return CHRF(
            char_order=self.char_order,
            word_order=self.word_order,
            beta=self.beta,
            lowercase=self.lowercase,
            whitespace=self.whitespace,
            eps_smoothing=self.eps_smoothing,
        )


@dataclass(frozen=True)
class TerSpec:
    """sacrebleu ``TER`` settings; its statistics (edits, mean reference length) are fractional."""

    normalized: bool = False
    no_punct: bool = False
    asian_support: bool = False
    case_sensitive: bool = False

    name: ClassVar[str] = "ter"
    dtype: ClassVar[type] = np.float64
    width: ClassVar[int] = 2

    def build(self) -> TER:
        return TER(
            normalized=self.normalized,
            no_punct=self.no_punct,
            asian_support=self.asian_support,
            case_sensitive=self.case_sensitive,
        )


MetricSpec = BleuSpec | ChrfSpec | TerSpec


def check_tokenizer(name: str) -> None:
    if name in OFFLINE_TOKENIZERS:
        return
    if name in BLEU.TOKENIZERS:
        raise MetricInputError(
            f"tokenizer {name!r} needs extra packages or a model download and is not available here; "
            f"use one of {', '.join(OFFLINE_TOKENIZERS)}",
            "tokenize",
        )
    raise MetricInputError(
        f"unknown tokenizer {name!r}; use one of {', '.join(OFFLINE_TOKENIZERS)}", "tokenize"
    )


def signature(spec: MetricSpec, num_refs: int, extra: dict[str, Any] | None = None) -> str:
    """sacrebleu's own signature string; ``num_refs`` is -1 when examples have varying counts."""
    metric = spec.build()
    metric.num_refs = num_refs
    sig = metric.get_signature()
    for key, value in (extra or {}).items():
        sig.update(key, value)
    return sig.format()


def num_refs(references: References) -> int:
    """The reference count sacrebleu reports: the common count, or -1 ("var") when it varies."""
    counts = {len(refs) for refs in references}
    return counts.pop() if len(counts) == 1 else -1


class _RegexpNoTemplate:
    """sacrebleu's 13a/zh post-tokenizer (``TokenizerRegexp``) with its regexes, minus template expansion.

    Its first rule pads each character of one ASCII class with spaces, which is exactly
    ``str.translate``; the others keep their regexes with equivalent callables and are skipped when
    the characters they need are absent.
    """

    def __init__(self) -> None:
        rules = TokenizerRegexp()._re
        single_chars = rules[0][0]
        self._pad = str.maketrans(
            {chr(c): f" {chr(c)} " for c in range(128) if single_chars.fullmatch(chr(c))}
        )
        (self._period_after, _), (self._period_before, _), (self._dash, _) = rules[1:]

    def __call__(self, line: str) -> str:
        line = line.translate(self._pad)
        if "." in line or "," in line:
            line = self._period_after.sub(_space_between_and_after, line)
            line = self._period_before.sub(_space_before_and_between, line)
        if "-" in line:
            line = self._dash.sub(_space_between_and_after, line)
        return " ".join(line.split())


def _space_between_and_after(match: Match[str]) -> str:
    return f"{match[1]} {match[2]} "


def _space_before_and_between(match: Match[str]) -> str:
    return f" {match[1]} {match[2]}"


class _Extractor(Protocol):
    def reference_info(self, refs: list[str]) -> Any: ...

    def segment(self, hypothesis: str, info: Any) -> list[Any]: ...


class _SacrebleuExtractor:
    """sacrebleu's per-segment path, in the order ``Metric._extract_corpus_statistics`` applies it."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def reference_info(self, refs: list[str]) -> Any:
        metric = self._metric
        return metric._extract_reference_info([metric._preprocess_segment(ref) for ref in refs])

    def segment(self, hypothesis: str, info: Any) -> list[Any]:
        return self._metric._compute_segment_statistics(self._metric._preprocess_segment(hypothesis), info)


def _ngrams(tokens: list[str], n: int) -> list[Any]:
    """Order-n n-grams built in C; unigrams stay strings, which is consistent on both sides."""
    return tokens if n == 1 else list(zip(*(tokens[i:] for i in range(n)), strict=False))


def _clipped_matches(hyp_ngrams: list[Any], ref_counts: Counter[Any]) -> int:
    """sum(min(hyp count, ref count)); with no repeated hypothesis n-gram that is a set intersection."""
    unique = set(hyp_ngrams)
    if len(unique) == len(hyp_ngrams):
        return len(unique & ref_counts.keys())
    return sum((Counter(hyp_ngrams) & ref_counts).values())


class _BleuExtractor:
    """BLEU's ``[hyp_len, ref_len, correct_1..N, total_1..N]`` exactly as sacrebleu computes them."""

    def __init__(self, spec: BleuSpec) -> None:
        self._metric = spec.build()
        tokenizer = self._metric.tokenizer
        if isinstance(getattr(tokenizer, "_post_tokenizer", None), TokenizerRegexp):
            tokenizer._post_tokenizer = _RegexpNoTemplate()
        self._orders = range(1, spec.max_ngram_order + 1)

    def reference_info(self, refs: list[str]) -> tuple[list[Counter[Any]], list[int]]:
        tokenized = [self._metric._preprocess_segment(ref).split() for ref in refs]
        merged = [Counter(_ngrams(tokenized[0], n)) for n in self._orders]
        for tokens in tokenized[1:]:
            for best, n in zip(merged, self._orders, strict=True):
                best |= Counter(_ngrams(tokens, n))  # sacrebleu keeps each n-gram's maximum over references
        return merged, [len(tokens) for tokens in tokenized]

    def segment(self, hypothesis: str, info: tuple[list[Counter[Any]], list[int]]) -> list[int]:
        ref_counts, ref_lens = info
        tokens = self._metric._preprocess_segment(hypothesis).split()
        hyp_len = len(tokens)
        correct = [_clipped_matches(_ngrams(tokens, n), ref_counts[n - 1]) for n in self._orders]
        total = [max(0, hyp_len - n + 1) for n in self._orders]
        return [hyp_len, self._metric._get_closest_ref_len(hyp_len, ref_lens), *correct, *total]


def _extractor(spec: MetricSpec) -> _Extractor:
    """Built per chunk (cheap), so tokenizer caches never carry results from one call into the next."""
    if isinstance(spec, BleuSpec):
        return _BleuExtractor(spec)
    return _SacrebleuExtractor(spec.build())


def chunk_statistics(
    specs: tuple[MetricSpec, ...], systems: tuple[Sequence[str], ...], references: References
) -> list[np.ndarray]:
    """One (n_systems, n_segments, width) array per spec; each reference is processed once for all systems."""
    out = []
    for spec in specs:
        extractor = _extractor(spec)
        rows = []
        for i, refs in enumerate(references):
            info = extractor.reference_info(refs)
            rows.append([extractor.segment(hyps[i], info) for hyps in systems])
        stats: np.ndarray = np.asarray(rows, dtype=spec.dtype).reshape(
            len(references), len(systems), spec.width
        )
        out.append(stats.transpose(1, 0, 2))
    return out


_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ProcessPoolExecutor:
    """A pool per worker count, started once: spawn keeps it safe next to threads (web servers, torch)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            _POOLS[workers] = pool
        return pool


def shutdown_pools() -> None:
    """Stop every worker pool, e.g. at service shutdown; the next parallel call starts a fresh one."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def _discard_pool(workers: int, pool: ProcessPoolExecutor) -> None:
    with _POOLS_LOCK:
        if _POOLS.get(workers) is pool:
            del _POOLS[workers]
    pool.shutdown(wait=False, cancel_futures=True)


def _ordered_map(
    pool: ProcessPoolExecutor, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]], in_flight: int
) -> Iterator[Any]:
    """Results in task order, with at most ``in_flight`` tasks submitted so inputs are pickled lazily."""
    pending: deque[Future[Any]] = deque()
    try:
        for task in tasks:
            pending.append(pool.submit(fn, *task))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def resolve_workers(workers: int | None) -> int:
    """``None`` means the CPUs this process may run on (its affinity set), not the whole host's count."""
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise MetricInputError("workers must be a positive integer", "workers")
    return workers


def run_tasks(
    fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]], workers: int, *, inline: bool
) -> list[Any]:
    """``fn(*task)`` for every task, in order: inline, or on the shared pool with few tasks in flight."""
    if inline or workers == 1:
        return [fn(*task) for task in tasks]
    pool = _pool(workers)
    try:
        return list(_ordered_map(pool, fn, tasks, in_flight=2 * workers))
    except BrokenProcessPool:
        _discard_pool(workers, pool)
        raise


def extract_statistics(
    specs: Sequence[MetricSpec],
    systems: Sequence[Sequence[str]],
    references: References,
    *,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Per-segment statistics of every system against shared references, one array per spec.

    Each array is (n_systems, n_segments, spec.width). Inputs must already be validated.
    """
    n_workers = resolve_workers(workers)
    n = len(references)
    chunk = CHUNK_SEGMENTS if n_workers == 1 else min(CHUNK_SEGMENTS, -(-n // n_workers))
    specs_t, systems_t = tuple(specs), tuple(systems)
    tasks = (
        (specs_t, tuple(hyps[start : start + chunk] for hyps in systems_t), references[start : start + chunk])
        for start in range(0, n, chunk)
    )
    parts = run_tasks(chunk_statistics, tasks, n_workers, inline=n < INLINE_BELOW)
    return [np.concatenate([part[k] for part in parts], axis=1) for k in range(len(specs_t))]
