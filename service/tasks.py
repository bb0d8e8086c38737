"""The task vocabulary, one name each: what a test set holds, and what a served model computes.

A test set is a ``Task`` (labels or reference texts). A model's architecture is a ``ModelTask``, which says
which ``Task`` its outputs are scored as and whether a classifier returns several labels. Evaluations match
the two through ``ModelTask.task`` and ``ModelTask.multilabel``, so no third vocabulary is needed.
"""

from enum import StrEnum


class Task(StrEnum):
    classification = "classification"
    generation = "generation"


class ModelTask(StrEnum):
    classification = "sequence-classification"
    multi_label = "multi-label-classification"
    causal_lm = "causal-lm"
    seq2seq_lm = "seq2seq-lm"

    @property
    def classifies(self) -> bool:
        return self in (ModelTask.classification, ModelTask.multi_label)

    @property
    def task(self) -> Task:
        return Task.classification if self.classifies else Task.generation

    @property
    def multilabel(self) -> bool:
        return self is ModelTask.multi_label
