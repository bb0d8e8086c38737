"""Per-segment ROUGE statistics equal to Google's rouge-score, for whole chunks of segments at once.

rouge-score scores one (target, prediction) pair at a time in Python. Here a chunk's texts are
tokenized in one pass (``rouge_tokens``), n-gram overlaps are counted for every pair with one sort,
and longest common subsequences come from the bit-parallel table in ``lcs``. The floating-point
formulas are rouge-score's own, in its operation order, so every per-segment precision, recall and
F-measure is the same double.

A segment's statistics are ``[1, fmeasure, precision, recall]``: summed over segments they give the
mean scores, so intervals and paired tests resample them like BLEU's (the first two columns carry the
score, so intervals resample only those). With several references a
segment takes, per ROUGE type, the reference with the highest F-measure (the first on ties), as
``RougeScorer.score_multi`` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from metrics.errors import MetricInputError
from metrics.lcs import SequencePairs, lcs_lengths, lcs_positions, ranges
from metrics.rouge_tokens import TOKENIZERS, Tokenized, tokenize_texts

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_NGRAM = re.compile(r"rouge([1-9])$")
# n-gram keys stay below this, so (pair, key, side) composites fit in 63 bits for any chunk's pairs.
KEY_LIMIT = 2**40


@dataclass(frozen=True)
class RougeSpec:
    """One ROUGE type with rouge-score's options; ``lowercase`` applies to the whitespace tokenizer."""

    rouge_type: str = "rougeL"
    use_stemmer: bool = False
    tokenize: str = "default"
    lowercase: bool = False

    name: ClassVar[str] = "rouge"
    dtype: ClassVar[type] = np.float64
    width: ClassVar[int] = 4
    scored_width: ClassVar[int] = 2
    """The leading columns the score depends on: ``[1, fmeasure]``."""

    @property
    def tokenizer_options(self) -> tuple[str, bool, bool]:
        return (self.tokenize, self.use_stemmer, self.lowercase and self.tokenize == "whitespace")

    def signature(self, num_refs: int) -> str:
        refs = "var" if num_refs < 0 else str(num_refs)
        tok = self.tokenize + ("-lc" if self.tokenizer_options[2] else "")
        split = "|split:newline" if self.rouge_type == "rougeLsum" else ""
        return f"nrefs:{refs}|tok:{tok}|stem:{'yes' if self.use_stemmer else 'no'}{split}|agg:mean"


def check_rouge_options(tokenize: object, use_stemmer: object) -> None:
    if tokenize not in TOKENIZERS:
        raise MetricInputError(f"rouge_tokenize must be one of {', '.join(TOKENIZERS)}", "rouge_tokenize")
    if not isinstance(use_stemmer, bool):
        raise MetricInputError("rouge_stemmer must be a boolean", "rouge_stemmer")
    if use_stemmer and tokenize != "default":
        raise MetricInputError("rouge_stemmer applies to the default tokenizer only", "rouge_stemmer")


@dataclass(frozen=True)
class _Pairs:
    """Every (system, segment, reference) as a (hypothesis document, reference document) pair."""

    hyp: np.ndarray
    ref: np.ndarray
    group_starts: np.ndarray
    """Where each (system, segment)'s run of pairs starts: runs are in system, then segment order."""


def _pairs(n_systems: int, ref_counts: np.ndarray) -> _Pairs:
    n_seg = ref_counts.size
    first_ref = n_systems * n_seg + np.cumsum(ref_counts) - ref_counts
    seg, offset = ranges(ref_counts)
    hyp = np.concatenate([k * n_seg + seg for k in range(n_systems)])
    ref = np.tile(first_ref[seg] + offset, n_systems)
    counts = np.tile(ref_counts, n_systems)
    return _Pairs(hyp, ref, np.cumsum(counts) - counts)


def _clipped_matches(
    pair_a: np.ndarray, key_a: np.ndarray, pair_b: np.ndarray, key_b: np.ndarray, n_pairs: int
) -> np.ndarray:
    """Per pair, the sum over keys of min(occurrences on side a, occurrences on side b)."""
    span = int(max(key_a.max(initial=0), key_b.max(initial=0))) + 1
    if n_pairs * span * 2 >= 2**62:
        keys = np.unique(np.concatenate([key_a, key_b]), return_inverse=True)[1].ravel()
        key_a, key_b = keys[: key_a.size], keys[key_a.size :]
        span = int(keys.max(initial=0)) + 1
    composite = np.concatenate([(pair_a * span + key_a) * 2, (pair_b * span + key_b) * 2 + 1])
    composite.sort()
    group, side = composite >> 1, composite & 1
    starts = np.ones(group.size, dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    run = np.cumsum(starts) - 1
    n_runs = int(run[-1]) + 1 if run.size else 0
    counts = np.bincount(run * 2 + side, minlength=2 * n_runs).reshape(n_runs, 2)
    matched = counts.min(axis=1)
    return np.bincount(group[starts] // span, weights=matched, minlength=n_pairs).astype(np.int64)


def _ngram_keys(tokens: Tokenized, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(position, n-gram id) of every n-gram within a document; equal ids for equal n-grams."""
    lengths = tokens.doc_lengths
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(tokens.ids.size)  # tokens left in the document
    at = np.flatnonzero(left >= n)
    key = tokens.ids[at]
    vocabulary = int(tokens.ids.max(initial=0)) + 1
    for k in range(1, n):
        key = key * vocabulary + tokens.ids[at + k]
        if k < n - 1 or vocabulary**n >= KEY_LIMIT:
            key = np.unique(key, return_inverse=True)[1].ravel()  # renumbered, so keys stay small
    return at, key


def _expand(docs: np.ndarray, tokens: Tokenized, at: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair, key) rows: the keys at positions ``at`` of document ``docs[p]``, for every pair p."""
    per_doc = np.bincount(tokens.doc[at], minlength=tokens.n_docs)
    first = np.cumsum(per_doc) - per_doc
    pair, offset = ranges(per_doc[docs])
    return pair, key[first[docs][pair] + offset]


def _scores(hits: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """rouge-score's precision, recall and ``scoring.fmeasure``, in its operation order: (pairs, 3)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = hits / pred
        recall = hits / target
        total = precision + recall
        f = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return np.column_stack([precision, recall, f])


def _ngram_scores(tokens: Tokenized, pairs: _Pairs, n: int) -> np.ndarray:
    at, key = _ngram_keys(tokens, n)
    pair_h, key_h = _expand(pairs.hyp, tokens, at, key)
    pair_r, key_r = _expand(pairs.ref, tokens, at, key)
    hits = _clipped_matches(pair_h, key_h, pair_r, key_r, pairs.hyp.size)
    counts = np.maximum(tokens.doc_lengths - n + 1, 0)
    return _scores(hits, np.maximum(counts[pairs.hyp], 1), np.maximum(counts[pairs.ref], 1))


def _lcs_scores(hits: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """An empty side scores 0 (rouge-score returns early); otherwise the usual formulas."""
    scores = _scores(hits, np.maximum(pred, 1), np.maximum(target, 1))
    scores[(pred == 0) | (target == 0)] = 0.0
    return scores


def _rouge_l(tokens: Tokenized, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    """rougeL scores per pair, and the LCS lengths."""
    lengths, starts = tokens.doc_lengths, tokens.doc_starts
    seqs = SequencePairs(tokens.ids, starts[pairs.ref], lengths[pairs.ref], starts[pairs.hyp], lengths[pairs.hyp])
    lcs = lcs_lengths(seqs)
    return _lcs_scores(lcs, lengths[pairs.hyp], lengths[pairs.ref]), lcs


def _rouge_lsum(tokens: Tokenized, pairs: _Pairs, rouge_l: np.ndarray) -> np.ndarray:
    """rougeLsum per pair (``_summary_level_lcs``): the union of each reference sentence's LCS with every
    candidate sentence, counted at most as often as the token occurs in the candidate.

    Sentences without tokens change nothing, so they are left out; with at most one sentence on each
    side the union is one LCS and the score is rougeL's.
    """
    sent_first = np.flatnonzero(np.concatenate([[True], tokens.sentence[1:] != tokens.sentence[:-1]]))
    sent_len = np.diff(np.append(sent_first, tokens.ids.size))
    sents_per_doc = np.bincount(tokens.doc[sent_first], minlength=tokens.n_docs)
    doc_first_sent = np.cumsum(sents_per_doc) - sents_per_doc
    n_ref, n_hyp = sents_per_doc[pairs.ref], sents_per_doc[pairs.hyp]
    out = rouge_l.copy()
    multi = np.flatnonzero((n_ref > 1) | (n_hyp > 1))
    if multi.size == 0:
        return out
    # One (reference sentence, candidate sentence) pair per combination within each multi-sentence pair.
    owner, k = ranges(n_ref[multi] * n_hyp[multi])
    ref_sent = doc_first_sent[pairs.ref[multi]][owner] + k // n_hyp[multi][owner]
    hyp_sent = doc_first_sent[pairs.hyp[multi]][owner] + k % n_hyp[multi][owner]
    seqs = SequencePairs(tokens.ids, sent_first[ref_sent], sent_len[ref_sent], sent_first[hyp_sent], sent_len[hyp_sent])
    which, offset = lcs_positions(seqs)
    # The union over candidate sentences: each reference token position once per pair, marked in a
    # row of flags per pair over its reference's tokens.
    starts, lengths = tokens.doc_starts, tokens.doc_lengths
    ref_docs = pairs.ref[multi]
    row = np.cumsum(lengths[ref_docs]) - lengths[ref_docs]
    marked = np.zeros(int(lengths[ref_docs].sum()), dtype=bool)
    marked[row[owner[which]] + sent_first[ref_sent[which]] + offset - starts[ref_docs][owner[which]]] = True
    union_owner, union_offset = ranges(lengths[ref_docs])
    union_owner = union_owner[marked]
    union_position = starts[ref_docs][union_owner] + union_offset[marked]
    docs = pairs.hyp[multi]
    cand_owner, cand_offset = ranges(lengths[docs])
    cand_tokens = tokens.ids[starts[docs][cand_owner] + cand_offset]
    hits = _clipped_matches(union_owner, tokens.ids[union_position], cand_owner, cand_tokens, multi.size)
    out[multi] = _lcs_scores(hits, lengths[pairs.hyp[multi]], lengths[pairs.ref[multi]])
    return out


def _best_reference(scores: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Per (system, segment), the row of its first reference with the highest F-measure: ``score_multi``."""
    f = scores[:, 2]
    best = np.maximum.reduceat(f, group_starts)
    counts = np.diff(np.append(group_starts, f.size))
    rows = np.arange(f.size)
    first = np.minimum.reduceat(np.where(f == np.repeat(best, counts), rows, f.size), group_starts)
    return scores[first]


def rouge_statistics(
    specs: Sequence[RougeSpec], systems: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> list[np.ndarray]:
    """(n_systems, n_segments, 4) statistics per spec; specs sharing a tokenizer share its tokens and LCS."""
    if not specs:
        return []
    n_seg, n_sys = len(references), len(systems)
    ref_counts = np.fromiter((len(refs) for refs in references), dtype=np.int64, count=n_seg)
    pairs = _pairs(n_sys, ref_counts)
    texts = [hyp for hyps in systems for hyp in hyps] + [ref for refs in references for ref in refs]
    out: dict[RougeSpec, np.ndarray] = {}
    for options in dict.fromkeys(spec.tokenizer_options for spec in specs):
        tokenize, use_stemmer, lowercase = options
        tokens = tokenize_texts(texts, tokenize=tokenize, use_stemmer=use_stemmer, lowercase=lowercase)
        by_type: dict[str, np.ndarray] = {}
        types = {spec.rouge_type for spec in specs if spec.tokenizer_options == options}
        if types & {"rougeL", "rougeLsum"}:
            by_type["rougeL"], _ = _rouge_l(tokens, pairs)
        if "rougeLsum" in types:
            by_type["rougeLsum"] = _rouge_lsum(tokens, pairs, by_type["rougeL"])
        for rouge_type in types:
            matched = _NGRAM.match(rouge_type)
            if matched:
                by_type[rouge_type] = _ngram_scores(tokens, pairs, int(matched[1]))
        for spec in specs:
            if spec.tokenizer_options == options:
                best = _best_reference(by_type[spec.rouge_type], pairs.group_starts)
                columns = [np.ones(len(best)), best[:, 2], best[:, 0], best[:, 1]]
                stats = np.column_stack(columns).reshape(n_sys, n_seg, RougeSpec.width)
                out[spec] = stats
    return [out[spec] for spec in specs]
