"""Per-segment sufficient statistics for BLEU, chrF, TER, ROUGE and exact match, extracted in parallel in
bounded chunks.

sacrebleu scores a corpus from per-segment statistics, but extracts them in one process and builds
every reference's n-grams up front (chrF: gigabytes for 100k segments). Here statistics are extracted
in chunks of a few thousand segments that run on a persistent process pool and come back as small
numpy arrays; chrF and TER process each example's references, use and drop them one at a time. Scores are computed from
these statistics elsewhere (``metrics.generation``), as sacrebleu separates extraction from scoring.

chrF and TER statistics come from sacrebleu's own ``_extract_reference_info`` and
``_compute_segment_statistics``. BLEU keeps sacrebleu's tokenizers and closest-length rule, but 13a
tokenizes a whole chunk in one pass of its rules and n-grams are counted for the whole chunk with
numpy group-bys: sacrebleu's per-segment regex templates and n-gram Counters are most of BLEU's time.
The tests check every statistic against sacrebleu's own methods. ROUGE (``metrics.rouge``) and exact
match (``metrics.exact_match``) have their own extraction, run in the same chunks.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import chain
from re import Match
from typing import Any, ClassVar

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp
from threadpoolctl import threadpool_limits

from metrics.cancel import checkpoint
from metrics.errors import MetricInputError
from metrics.exact_match import ExactMatchSpec, exact_match_statistics
from metrics.rouge import RougeSpec, rouge_statistics

# Segments per task: large enough to amortise inter-process transfer, small enough to bound memory.
CHUNK_SEGMENTS = 5_000
# Below this many segments, process start and transfer cost more than they save.
INLINE_BELOW = 4_000
# chrF and TER run per segment in Python: a cancelled run stops within this many segments.
CHECK_EVERY = 256

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


MetricSpec = BleuSpec | ChrfSpec | TerSpec | RougeSpec | ExactMatchSpec


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
    """sacrebleu's own signature string (ROUGE and exact match: the same format, their own fields); ``num_refs``
    is -1 when examples have varying counts."""
    if isinstance(spec, RougeSpec | ExactMatchSpec):
        return "|".join([spec.signature(num_refs), *(f"{key}:{value}" for key, value in (extra or {}).items())])
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
    """sacrebleu's 13a/zh post-tokenizer (``TokenizerRegexp``) with its rules, minus per-match templates.

    Its first rule pads each character of one ASCII class with spaces: one ``str.replace`` per
    character, the space first so that the spaces added for the others are not padded again. Its
    second rule, which Python's regex engine tries at every position, becomes a scan for runs of
    periods and commas (``_period_after_run``); the third and fourth become a split and a join on their
    character (``_space_where``). Rules are skipped when the characters they need are absent.
    """

    def __init__(self) -> None:
        single_chars = TokenizerRegexp()._re[0][0]
        self._padded = sorted((chr(c) for c in range(128) if single_chars.fullmatch(chr(c))), key=" ".__ne__)

    def spaced(self, text: str) -> str:
        """The rules' output before whitespace is normalised."""
        for char in self._padded:
            if char in text:
                text = text.replace(char, f" {char} ")
        if "." in text or "," in text:
            text = _PERIOD_RUN.sub(_period_after_run, text)
            # Rule 3, ``([\.,])([^0-9])`` -> `` \1 \2``. After rule 2 no two periods or commas touch, so its
            # matches never chain: each one followed by a non-digit gets a space on each side.
            text = _space_where(text, ".", before=True)
            text = _space_where(text, ",", before=True)
        if "-" in text:
            # Rule 4, ``([0-9])(-)`` -> ``\1 \2 ``: a dash after a digit gets a space on each side.
            text = _space_where(text, "-", before=False)
        return text

    def __call__(self, line: str) -> str:
        return " ".join(self.spaced(line).split())


_PERIOD_RUN = re.compile(r"[.,]+")


def _period_after_run(match: Match[str]) -> str:
    """``re.sub(r"([^0-9])([\\.,])", r"\\1 \\2 ")`` on one maximal run of periods and commas.

    That rule's matches pair a non-digit with the period or comma after it, left to right without
    overlap; within a run every character is a non-digit, so the run splits into such pairs, the
    first paired with the character before the run when that is a non-digit. Pairs never reach
    outside their run.
    """
    run, start = match[0], match.start()
    pairs_with_previous = start > 0 and match.string[start - 1] not in "0123456789"
    if len(run) == 1:  # the common case, e.g. a sentence-final period
        return f" {run} " if pairs_with_previous else run
    out = f" {run[0]} " if pairs_with_previous else ""
    rest = run[1:] if pairs_with_previous else run
    out += "".join(f"{rest[i]} {rest[i + 1]} " for i in range(0, len(rest) - 1, 2))
    return out + rest[-1] if len(rest) % 2 else out


_DIGITS = frozenset("0123456789")


def _space_where(text: str, char: str, *, before: bool) -> str:
    """A space each side of every ``char`` that a non-digit follows (``before``) or that a digit precedes:
    a split and a join, far cheaper than a regex scan with replacements.
    """
    parts = text.split(char)
    if before:
        joins = (f" {char} " if nxt and nxt[0] not in _DIGITS else char for nxt in parts[1:])
    else:
        joins = (f" {char} " if prev and prev[-1] in _DIGITS else char for prev in parts[:-1])
    out = [parts[0]]
    for join, part in zip(joins, parts[1:], strict=True):
        out.append(join)
        out.append(part)
    return "".join(out)


def _clean_13a(line: str) -> str:
    """``Tokenizer13a``'s language-independent part, which runs before its padded regexes."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return line


class _SacrebleuExtractor:
    """sacrebleu's per-segment path, in the order ``Metric._extract_corpus_statistics`` applies it."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def reference_info(self, refs: list[str]) -> Any:
        metric = self._metric
        return metric._extract_reference_info([metric._preprocess_segment(ref) for ref in refs])

    def segment(self, hypothesis: str, info: Any) -> list[Any]:
        return self._metric._compute_segment_statistics(self._metric._preprocess_segment(hypothesis), info)


class _BleuTokenizer:
    """sacrebleu's BLEU preprocessing (lowercase, rstrip, tokenizer) for many segments at once.

    13a pads every cleaned segment with spaces (``f" {line} "``), so its rules run once over all
    segments joined by a separator character that is absent from them and that no rule touches (a
    non-whitespace control character): no rule matches a padding space next to it (rule 1 pads only
    printable ASCII, rules 2-3 need "." or "," beside the space, rule 4 needs a digit and "-"), so no
    match crosses a boundary and every segment's matches are those it has alone. zh does not pad, so a
    rule could match across a boundary there; zh and the other tokenizers run per segment.
    """

    def __init__(self, spec: BleuSpec) -> None:
        self._metric = spec.build()
        tokenizer = self._metric.tokenizer
        if isinstance(getattr(tokenizer, "_post_tokenizer", None), TokenizerRegexp):
            tokenizer._post_tokenizer = _RegexpNoTemplate()
        self._bulk_13a = _RegexpNoTemplate() if spec.tokenize == "13a" else None
        self._lowercase = spec.lowercase

    def __call__(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All segments' token ids, concatenated; each segment's token count; the vocabulary, by id."""
        if self._bulk_13a is not None and lines:
            if self._lowercase:
                lines = [line.lower() for line in lines]
            lines = [line.rstrip() for line in lines]
            text = "".join(lines)
            if "<skipped>" in text or "\n" in text or "&" in text:
                lines = [_clean_13a(line) for line in lines]
                text = "".join(lines)
            separator = next((char for char in _SEPARATORS if char not in text), None)
            if separator is not None:
                joined = f" {separator} ".join(lines)
                ids, vocabulary = _token_ids(self._bulk_13a.spaced(f" {joined} ").split())
                # The separator, when there is one, is the one token no rule makes: it marks the boundaries.
                is_separator = ids == vocabulary.index(separator) if separator in vocabulary else ids < 0
                bounds = np.flatnonzero(is_separator)
                lengths = np.diff(bounds, prepend=-1, append=ids.size) - 1
                return ids[~is_separator], lengths, vocabulary
        tokenized = [self._metric._preprocess_segment(line).split() for line in lines]
        lengths = np.fromiter(map(len, tokenized), dtype=np.int64, count=len(tokenized))
        ids, vocabulary = _token_ids(list(chain.from_iterable(tokenized)))
        return ids, lengths, vocabulary


def _token_ids(tokens: list[str]) -> tuple[np.ndarray, list[str]]:
    """Integer ids in order of first appearance, and the tokens by id."""
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    ids = np.fromiter(map(vocabulary.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    return ids, list(vocabulary)


# Control characters that are neither whitespace to ``str.split`` nor touched by any 13a rule.
_SEPARATORS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x1C))]


def _bleu_statistics(
    spec: BleuSpec, systems: tuple[Sequence[str], ...], references: References
) -> np.ndarray:
    """(n_systems, n_segments, width) BLEU statistics, as sacrebleu's per-segment Counters give them.

    Tokens become integer ids. For each order, every position where an n-gram starts gets a key
    (segment, n-gram, role), where the role is a system or one of the segment's references, and one
    sort groups the keys: a run of equal (segment, n-gram) holds every count sacrebleu's Counters
    would, so clipped matches are a min against the references' max per run. Unigrams are named by
    their token ids; a longer n-gram by its run's number, unique within its segment (all matching is).
    A name extended by one token id keys the next order, so keys stay small without a global n-gram
    table.
    """
    n_seg, n_sys = len(references), len(systems)
    ref_counts = np.fromiter((len(refs) for refs in references), dtype=np.int64, count=n_seg)
    lines = [hyp for hyps in systems for hyp in hyps]
    lines += [ref for refs in references for ref in refs]
    ids, lengths, vocabulary = _BleuTokenizer(spec)(lines)
    n_hyp_docs = n_sys * n_seg
    doc = np.repeat(np.arange(lengths.size), lengths)
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(ids.size)  # tokens left in the doc
    ref_seg = np.repeat(np.arange(n_seg), ref_counts)
    # Per document: its segment, and its role (system k is k; the j-th reference is n_sys + j).
    first_ref = np.cumsum(ref_counts) - ref_counts
    doc_seg = np.concatenate([np.tile(np.arange(n_seg), n_sys), ref_seg])
    doc_role = np.concatenate(
        [np.repeat(np.arange(n_sys), n_seg), n_sys + np.arange(ref_seg.size) - first_ref[ref_seg]]
    )
    roles = n_sys + int(ref_counts.max(initial=0))
    pos_seg, pos_role = doc_seg[doc], doc_role[doc]

    hyp_len = lengths[:n_hyp_docs].reshape(n_sys, n_seg)
    ref_len = lengths[n_hyp_docs:]
    closest = _closest_ref_len(hyp_len, ref_len, ref_seg, n_seg)

    orders = range(1, spec.max_ngram_order + 1)
    correct = np.zeros((len(orders), n_sys, n_seg), dtype=np.int64)
    names = ids  # each position's (n-1)-gram: token ids, then run numbers within the segment
    for n in orders:
        at = np.flatnonzero(remaining >= n)
        key = ids[at] if n == 1 else names[at] * (len(vocabulary) + 1) + ids[at + n - 1]
        span = int(key.max(initial=0)) + 1
        if n_seg * span * roles >= 2**62:  # never at chunk sizes, but keys must not overflow
            key = np.unique(key, return_inverse=True)[1]
            span = int(key.max(initial=0)) + 1
        composite = (pos_seg[at] * span + key) * roles + pos_role[at]
        # Only the middle orders name n-grams for the next one; the others need no way back to positions.
        named = 1 < n < spec.max_ngram_order
        order = np.argsort(composite) if named else None
        seg_gram, role = np.divmod(composite[order] if order is not None else np.sort(composite), roles)
        starts = np.ones(seg_gram.size, dtype=bool)
        starts[1:] = seg_gram[1:] != seg_gram[:-1]
        run = np.cumsum(starts) - 1
        n_runs = int(run[-1]) + 1 if run.size else 0
        counts = np.bincount(run * roles + role, minlength=n_runs * roles).reshape(n_runs, roles)
        ref_max = counts[:, n_sys:].max(axis=1, initial=0)
        run_seg = seg_gram[starts] // span
        for k in range(n_sys):
            correct[n - 1, k] = np.bincount(run_seg, weights=np.minimum(counts[:, k], ref_max), minlength=n_seg)
        if order is not None:
            names = np.zeros(ids.size, dtype=np.int64)
            names[at[order]] = run

    total = np.maximum(0, hyp_len[None] - np.arange(len(orders))[:, None, None])
    stats = np.concatenate([hyp_len[None], closest[None], correct, total])
    return stats.transpose(1, 2, 0).astype(spec.dtype)


def _closest_ref_len(hyp_len: np.ndarray, ref_len: np.ndarray, ref_seg: np.ndarray, n_seg: int) -> np.ndarray:
    """sacrebleu's closest reference length per system and segment: the smallest distance, ties to the shorter."""
    closest = np.empty(hyp_len.shape, dtype=np.int64)
    scale = int(ref_len.max(initial=0)) + 1
    for k, lengths in enumerate(hyp_len):
        distance = np.abs(lengths[ref_seg] - ref_len) * scale + ref_len
        best = np.full(n_seg, np.iinfo(np.int64).max)
        np.minimum.at(best, ref_seg, distance)
        closest[k] = best % scale
    return closest


def chunk_statistics(
    specs: tuple[MetricSpec, ...], systems: tuple[Sequence[str], ...], references: References
) -> list[np.ndarray]:
    """One (n_systems, n_segments, width) array per spec; each reference is processed once for all systems."""
    rouge_specs = [spec for spec in specs if isinstance(spec, RougeSpec)]
    rouge = dict(zip(rouge_specs, rouge_statistics(rouge_specs, systems, references), strict=True))
    out = []
    for spec in specs:
        if isinstance(spec, RougeSpec):
            out.append(rouge[spec])
            continue
        if isinstance(spec, ExactMatchSpec):
            out.append(exact_match_statistics(spec, systems, references))
            continue
        if isinstance(spec, BleuSpec):
            out.append(_bleu_statistics(spec, systems, references))
            continue
        extractor = _SacrebleuExtractor(spec.build())
        rows = []
        for i, refs in enumerate(references):
            if i % CHECK_EVERY == 0:
                checkpoint()
            info = extractor.reference_info(refs)
            rows.append([extractor.segment(hyps[i], info) for hyps in systems])
        stats: np.ndarray = np.asarray(rows, dtype=spec.dtype).reshape(
            len(references), len(systems), spec.width
        )
        out.append(stats.transpose(1, 0, 2))
    return out


_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _single_threaded_blas() -> None:
    """Worker initializer: the pool is the parallelism, so each worker's BLAS runs on one thread."""
    threadpool_limits(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    """A pool per worker count, started once: spawn keeps it safe next to threads (web servers, torch)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded_blas
            )
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
            checkpoint()
            pending.append(pool.submit(fn, *task))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            checkpoint()
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


def _checked(fn: Callable[..., Any], task: tuple[Any, ...]) -> Any:
    checkpoint()
    return fn(*task)


def run_tasks(
    fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]], workers: int, *, inline: bool
) -> list[Any]:
    """``fn(*task)`` for every task, in order: inline, or on the shared pool with few tasks in flight."""
    if inline or workers == 1:
        return [_checked(fn, task) for task in tasks]
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
