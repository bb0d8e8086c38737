"""The data audit of an upload: duplicates, conflicting labels, empty inputs, label balance, lengths.

Per-record statistics stream in with bounded state (length histograms, at most MAX_LABELS label
counts); duplicate and contamination counts come from grouping queries on the stored fingerprints,
so memory stays flat however large the set. Only ids and counts are reported, never a label's owner.
"""

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from metrics.classification import IMBALANCE_SHARE
from service.tasks import Task
from service.test_sets.records import Record

# A class this many times larger than the smallest one makes the set imbalanced.
IMBALANCE_RATIO = 10.0
MAX_EXAMPLE_IDS = 10
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class DuplicateGroups:
    groups: int
    records: int
    examples: list[list[str]]
    """Ids of a few groups, a few ids each."""


@dataclass(frozen=True)
class Contamination:
    training_inputs: int
    contaminated: int
    example_ids: list[str]


def length_stats(histogram: Counter[int]) -> dict[str, float | int] | None:
    """Exact min, max, mean and nearest-rank percentiles from a value → count histogram."""
    n = sum(histogram.values())
    if n == 0:
        return None
    values = sorted(histogram)
    stats: dict[str, float | int] = {
        "min": values[0],
        "max": values[-1],
        "mean": sum(v * c for v, c in histogram.items()) / n,
    }
    ranks = {p: max(1, math.ceil(p / 100 * n)) for p in PERCENTILES}
    seen = 0
    for value in values:
        seen += histogram[value]
        for p, rank in ranks.items():
            if f"p{p}" not in stats and seen >= rank:
                stats[f"p{p}"] = value
    return stats


@dataclass
class AuditBuilder:
    task: Task
    empty: int = 0
    empty_ids: list[str] = field(default_factory=list)
    chars: Counter[int] = field(default_factory=Counter)
    words: Counter[int] = field(default_factory=Counter)
    reference_chars: Counter[int] = field(default_factory=Counter)
    references_per_example: Counter[int] = field(default_factory=Counter)
    labels_per_example: Counter[int] = field(default_factory=Counter)
    label_counts: Counter[int | str] = field(default_factory=Counter)
    multilabel: bool = False

    def add(self, record: Record) -> None:
        text = record.input
        if not text.strip():
            self.empty += 1
            if len(self.empty_ids) < MAX_EXAMPLE_IDS:
                self.empty_ids.append(record.id)
        self.chars[len(text)] += 1
        self.words[len(text.split())] += 1
        if self.task is Task.generation:
            self.references_per_example[len(record.target)] += 1
            for reference in record.target:
                self.reference_chars[len(reference)] += 1
        elif isinstance(record.target, list):
            self.multilabel = True
            self.labels_per_example[len(record.target)] += 1
            self.label_counts.update(record.target)
        else:
            self.label_counts[record.target] += 1

    def sorted_labels(self) -> list[int | str]:
        return sorted(self.label_counts)

    def finish(
        self,
        records: int,
        exact: DuplicateGroups,
        normalized: DuplicateGroups,
        conflicting: DuplicateGroups,
        contamination: Contamination | None,
        ignored_fields: set[str],
    ) -> dict[str, Any]:
        lengths: dict[str, Any] = {
            "input_chars": length_stats(self.chars),
            "input_words": length_stats(self.words),
        }
        if self.task is Task.generation:
            lengths["reference_chars"] = length_stats(self.reference_chars)
            lengths["references_per_example"] = length_stats(self.references_per_example)
        elif self.multilabel:
            lengths["labels_per_example"] = length_stats(self.labels_per_example)
        audit: dict[str, Any] = {
            "records": records,
            "empty_inputs": {"count": self.empty, "example_ids": self.empty_ids},
            "duplicates": {
                "exact": _groups(exact),
                "normalized": _groups(normalized),
                "conflicting_targets": _groups(conflicting),
            },
            "label_distribution": None,
            "lengths": lengths,
            "contamination": None,
            "ignored_fields": sorted(ignored_fields),
            "warnings": [],
        }
        warnings: list[str] = audit["warnings"]
        if self.task is Task.classification:
            audit["label_distribution"] = {str(label): self.label_counts[label] for label in self.sorted_labels()}
            warnings.extend(self._balance_warnings(records))
        if self.empty:
            warnings.append(f"{self.empty} empty or whitespace-only inputs")
        if exact.groups:
            warnings.append(f"{exact.records} records share their input exactly with another (groups: {exact.groups})")
        if normalized.groups > exact.groups:
            warnings.append(
                f"{normalized.records} records share their normalised input with another (groups: {normalized.groups})"
            )
        if conflicting.groups:
            what = "labels" if self.task is Task.classification else "references"
            warnings.append(f"{conflicting.groups} groups of duplicate inputs have conflicting {what}")
        if contamination is not None:
            audit["contamination"] = {
                "training_inputs": contamination.training_inputs,
                "contaminated": contamination.contaminated,
                "share": contamination.contaminated / records,
                "example_ids": contamination.example_ids,
            }
            if contamination.contaminated:
                warnings.append(
                    f"{contamination.contaminated} test inputs ({contamination.contaminated / records:.1%}) "
                    "also occur in the training data"
                )
        return audit

    def _balance_warnings(self, records: int) -> list[str]:
        if len(self.label_counts) < 2:
            return [f"only one label occurs in {records} records"]
        (top, top_count), *_ = self.label_counts.most_common(1)
        smallest = min(self.label_counts.values())
        share = top_count / (sum(self.label_counts.values()) if self.multilabel else records)
        if share >= IMBALANCE_SHARE or top_count >= IMBALANCE_RATIO * smallest:
            return [
                f"imbalanced labels: the most frequent label is {share:.0%} of label occurrences and "
                f"{top_count / smallest:.0f}x the rarest; report f1 beside accuracy"
            ]
        return []


def _groups(groups: DuplicateGroups) -> dict[str, Any]:
    return {"groups": groups.groups, "records": groups.records, "example_ids": groups.examples}
