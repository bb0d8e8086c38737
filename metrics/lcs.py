"""Longest common subsequences of many token-id sequence pairs at once, bit-parallel (Hyyrö 2004).

rouge-score fills an (m+1) x (n+1) table in Python for every pair. Here each reference is a row of
bits, one per token, in 64-bit words; each candidate token updates a whole column of the table in a
few integer operations, for all pairs at once:

    U = V & match[token];  V = (V + U) | (V - U)

Bit i of V is 1 where table[i+1][j] == table[i][j], so the LCS length is the count of zero bits, and
a stored column answers any table comparison the backtrack needs. Pairs run sorted by candidate
length, so step j touches only the pairs still running, and grouped by reference words, so a long
reference does not widen the short ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from metrics.cancel import checkpoint
from metrics.errors import MetricInputError

WORD = 64
_ONE = np.uint64(1)
# Match-mask words (8 bytes each) held at once: pairs go through in batches of about this many.
BATCH_WORDS = 4_000_000
# One pair's match masks alone, in words: past it ROUGE-L is refused (rouge-score's table would hold 64x more cells).
MAX_PAIR_WORDS = 2**24


@dataclass(frozen=True)
class SequencePairs:
    """(reference, candidate) pairs, each side a run of ``tokens`` given by its start and length."""

    tokens: np.ndarray
    ref_start: np.ndarray
    ref_len: np.ndarray
    can_start: np.ndarray
    can_len: np.ndarray


def ranges(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, offset) of every element of runs of ``lengths[k]`` elements laid end to end, run by run."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    first = np.cumsum(lengths) - lengths
    offset = np.arange(owner.size) - first[owner]
    return owner, offset


@dataclass(frozen=True)
class _Group:
    """Pairs that need the same number of words, sorted by candidate length, longest first."""

    pairs: np.ndarray
    words: int
    step_start: np.ndarray
    """Where each step's run of pair values starts in a step-major array: step j holds the pairs still running."""
    running: np.ndarray
    """Pairs still running at each step: a prefix of ``pairs``."""


def _group(pairs: np.ndarray, words: int, lengths: np.ndarray) -> _Group:
    # lengths is descending: the pairs running at step j are those longer than j.
    running = np.searchsorted(-lengths, -np.arange(int(lengths[0])), side="left")
    return _Group(pairs, words, np.concatenate([[0], np.cumsum(running)]), running)


def _groups(seqs: SequencePairs) -> Iterator[_Group]:
    """Pairs by reference words, in batches of at most BATCH_WORDS match-mask words (one pair at least)."""
    live = np.flatnonzero((seqs.ref_len > 0) & (seqs.can_len > 0))
    words = (seqs.ref_len[live] + WORD - 1) // WORD
    if live.size and int((words * seqs.can_len[live]).max()) > MAX_PAIR_WORDS:
        raise MetricInputError(
            f"a reference and hypothesis too long for ROUGE-L: their token counts multiply to more than "
            f"{MAX_PAIR_WORDS * WORD:,}; split the segment"
        )
    for w in np.unique(words):
        group = live[words == w]
        group = group[np.argsort(-seqs.can_len[group], kind="stable")]
        lengths = seqs.can_len[group]
        batch = np.cumsum(lengths * w) // BATCH_WORDS
        for start, stop in zip(*_runs(batch), strict=True):
            yield _group(group[start:stop], int(w), lengths[start:stop])


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop of each run of equal values in a sorted array."""
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return starts, np.append(starts[1:], keys.size)


def _match_masks(seqs: SequencePairs, group: _Group) -> np.ndarray:
    """(sum of candidate lengths, words) step-major: the reference positions equal to each candidate token."""
    pairs = group.pairs
    owner, offset = ranges(seqs.ref_len[pairs])
    vocabulary = int(seqs.tokens.max(initial=0)) + 1
    keys = owner * vocabulary + seqs.tokens[seqs.ref_start[pairs][owner] + offset]
    order = np.argsort(keys)  # any order within a key: its bits are summed
    keys, offset = keys[order], offset[order]
    firsts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    unique = keys[firsts]
    bits = _ONE << (offset % WORD).astype(np.uint64)
    table = np.zeros((unique.size + 1, group.words), dtype=np.uint64)  # the last row: no match
    for w in range(group.words):
        # One reference position per bit, so a group's sum is its bitwise or.
        table[:-1, w] = np.add.reduceat(np.where(offset // WORD == w, bits, 0), firsts) if firsts.size else 0
    c_owner, c_offset = ranges(seqs.can_len[pairs])
    c_keys = c_owner * vocabulary + seqs.tokens[seqs.can_start[pairs][c_owner] + c_offset]
    found = np.searchsorted(unique, c_keys)
    found[(found >= unique.size) | (unique[np.minimum(found, max(unique.size - 1, 0))] != c_keys)] = unique.size
    masks = np.empty((c_keys.size, group.words), dtype=np.uint64)
    masks[group.step_start[c_offset] + c_owner] = table[found]
    return masks


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b over rows of little-endian 64-bit words, carries crossing words; the top carry is dropped."""
    if a.shape[1] == 1:
        return a + b
    out = np.empty_like(a)
    carry = np.zeros(len(a), dtype=np.uint64)
    for w in range(a.shape[1]):
        s = a[:, w] + b[:, w]
        low = s < a[:, w]
        out[:, w] = s + carry
        carry = (low | (out[:, w] < s)).astype(np.uint64)
    return out


def _columns(seqs: SequencePairs, group: _Group, keep: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The last column of every pair in the group and, with ``keep``, every column step-major."""
    masks = _match_masks(seqs, group)
    v = np.full((group.pairs.size, group.words), np.iinfo(np.uint64).max, dtype=np.uint64)
    columns = np.empty_like(masks) if keep else None
    for j, k in enumerate(group.running.tolist()):
        current = v[:k]
        u = current & masks[group.step_start[j] : group.step_start[j] + k]
        # U is a subset of V's bits, so V - U is V ^ U: no borrow.
        v[:k] = _add(current, u) | (current ^ u)
        if columns is not None:
            columns[group.step_start[j] : group.step_start[j] + k] = v[:k]
    return v, columns


def _zeros_in_low_bits(v: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Zero bits among the lowest ``lengths[k]`` bits of each row of words."""
    words = v.shape[1]
    keep = np.clip(lengths[:, None] - WORD * np.arange(words)[None, :], 0, WORD)
    low = np.where(keep >= WORD, np.iinfo(np.uint64).max, (_ONE << keep.astype(np.uint64)) - _ONE)
    ones = np.unpackbits((v & low).view(np.uint8), axis=1).sum(axis=1)
    return lengths - ones


def lcs_lengths(seqs: SequencePairs) -> np.ndarray:
    """The LCS length of every pair (0 where either side is empty)."""
    out = np.zeros(seqs.ref_len.size, dtype=np.int64)
    for group in _groups(seqs):
        checkpoint()
        v, _ = _columns(seqs, group, keep=False)
        out[group.pairs] = _zeros_in_low_bits(v, seqs.ref_len[group.pairs])
    return out


def lcs_positions(seqs: SequencePairs) -> tuple[np.ndarray, np.ndarray]:
    """(pair, reference offset) of the LCS that rouge-score's ``_backtrack_norec`` reads out, for every pair.

    From the table's corner: equal tokens are taken diagonally; otherwise the step goes up when
    ``table[i-1][j] == table[i][j]`` (bit i-1 of column j set) and left when not, as rouge-score's
    ``table[i][j-1] > table[i-1][j]`` test decides, since the two sides' maximum is ``table[i][j]``.
    """
    pair_parts: list[np.ndarray] = []
    offset_parts: list[np.ndarray] = []
    for group in _groups(seqs):
        checkpoint()
        _, columns = _columns(seqs, group, keep=True)
        assert columns is not None
        local = np.arange(group.pairs.size)
        ref_start, can_start = seqs.ref_start[group.pairs], seqs.can_start[group.pairs]
        i, j = seqs.ref_len[group.pairs].copy(), seqs.can_len[group.pairs].copy()
        while local.size:
            ii, jj = i[local], j[local]
            equal = seqs.tokens[ref_start[local] + ii - 1] == seqs.tokens[can_start[local] + jj - 1]
            column = columns[group.step_start[jj - 1] + local, (ii - 1) // WORD]
            up = ((column >> ((ii - 1) % WORD).astype(np.uint64)) & _ONE).astype(bool)
            pair_parts.append(group.pairs[local[equal]])
            offset_parts.append(ii[equal] - 1)
            i[local] = ii - (equal | up)
            j[local] = jj - (equal | ~up)
            local = local[(i[local] > 0) & (j[local] > 0)]
    if not pair_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(pair_parts), np.concatenate(offset_parts)
