"""Exact match: whether a hypothesis equals one of its references once surrounding whitespace is stripped.

A segment's statistics are ``[1, match]``, so their sums give the share of matches and intervals and
paired tests resample them like every other generation metric's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class ExactMatchSpec:
    """``lowercase`` compares lowercased texts."""

    lowercase: bool = False

    name: ClassVar[str] = "exact_match"
    dtype: ClassVar[type] = np.int32
    width: ClassVar[int] = 2
    scored_width: ClassVar[int] = 2

    def normalise(self, text: str) -> str:
        stripped = text.strip()
        return stripped.lower() if self.lowercase else stripped

    def signature(self, num_refs: int) -> str:
        refs = "var" if num_refs < 0 else str(num_refs)
        return f"nrefs:{refs}|case:{'lc' if self.lowercase else 'mixed'}|strip:yes"


def exact_match_statistics(
    spec: ExactMatchSpec, systems: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> np.ndarray:
    """(n_systems, n_segments, 2) statistics; each segment's references are normalised once for all systems."""
    accepted = [{spec.normalise(ref) for ref in refs} for refs in references]
    stats: np.ndarray = np.ones((len(systems), len(references), 2), dtype=spec.dtype)
    for k, hyps in enumerate(systems):
        stats[k, :, 1] = np.fromiter(
            (spec.normalise(hyp) in refs for hyp, refs in zip(hyps, accepted, strict=True)),
            dtype=bool,
            count=len(accepted),
        )
    return stats
