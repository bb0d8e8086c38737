"""Contracts of the stateless metric endpoints: /v1/metrics/classification, /generation, /compare.

Request fields carry the names of the ``metrics`` function parameters they feed, so ``arguments()``
hands them over as they are and a route adds only the operator's limits.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Label = StrictInt | StrictStr
LabelOrLabels = Label | list[Label]
Average = Literal["macro", "micro", "weighted", "binary", "samples"]
ZeroDivision = Literal[0, 1, "nan"]


class MetricRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def arguments(self) -> dict[str, Any]:
        """The fields as the metric function's keyword arguments; shallow, so long label lists are not copied."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "task"}


class IntervalRequest(MetricRequest):
    confidence_level: float = Field(0.95, gt=0, lt=1)
    n_resamples: int = Field(1000, ge=0, description="Bootstrap resamples; 0 turns intervals off.")
    seed: int | None = Field(0, ge=0, description="Seed for reproducible intervals; null draws a fresh one.")


class ClassificationRequest(IntervalRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": ["fresh", "rotten", "rotten", "fresh", "fresh", "rotten"],
                    "references": ["fresh", "rotten", "fresh", "fresh", "rotten", "rotten"],
                    "average": "macro",
                }
            ]
        }
    )

    predictions: list[LabelOrLabels] = Field(
        description="One label per example, or a list of labels per example for multilabel."
    )
    references: list[LabelOrLabels]
    average: Average | None = "macro"
    labels: list[Label] | None = None
    pos_label: Label = 1
    zero_division: ZeroDivision = 0
    probabilities: list[dict[str, float]] | None = Field(
        None,
        description="Single-label only: per example, every label's probability (rows sum to 1 within 1e-6). "
        "Adds calibration: ECE over 15 bins of the predicted label's probability, Brier score, log loss.",
    )
    groups: list[StrictStr] | None = Field(
        None, description="Per example, its group: adds slices, the same report on each group's examples alone."
    )


class Interval(BaseModel):
    low: float | None
    high: float | None
    level: float
    method: str


class PerClass(BaseModel):
    precision: float | None
    recall: float | None
    f1: float | None
    support: int


class ConfusionMatrix(BaseModel):
    labels: list[Label]
    matrix: list[list[int]]


Score = float | None | list[float | None]


class MajorityBaseline(BaseModel):
    label: Label | list[Label] = Field(description="The most frequent reference label (label set for multilabel).")
    accuracy: float | None
    f1: Score


class CalibrationBin(BaseModel):
    lower: float
    upper: float
    count: int
    confidence: float | None = Field(description="Mean probability of the predicted label; null when empty.")
    accuracy: float | None


class Calibration(BaseModel):
    ece: float | None
    brier: float | None
    log_loss: float | None
    bins: list[CalibrationBin]
    confidence_intervals: dict[str, Interval] = {}


class ClassificationScores(BaseModel):
    accuracy: float | None
    average: Average | None
    precision: Score
    recall: Score
    f1: Score
    labels: list[Label]
    per_class: dict[str, PerClass]
    confusion_matrix: ConfusionMatrix | dict[str, list[list[int]]]
    support: int
    majority_baseline: MajorityBaseline
    warnings: list[str]
    confidence_intervals: dict[str, Interval] = {}
    calibration: Calibration | None = None


class ClassificationResponse(ClassificationScores):
    slices: dict[str, ClassificationScores] | None = Field(
        None, description="With groups: per group, the same scores computed on its examples alone."
    )


GenerationMetric = Literal["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"]
ClassificationMetric = Literal["accuracy", "precision", "recall", "f1"]
PairedTestName = Literal["paired_bootstrap", "approximate_randomization"]
Reference = StrictStr | list[StrictStr]


def _bleu_only() -> list[GenerationMetric]:
    return ["bleu"]


def _accuracy_and_f1() -> list[ClassificationMetric]:
    return ["accuracy", "f1"]


class TextOptions(BaseModel):
    tokenize: str = Field("13a", description="A sacrebleu BLEU tokenizer: 13a, intl, zh, char, none, ...")
    lowercase: bool = Field(
        False, description="Lowercase BLEU, chrF, exact match and the whitespace ROUGE tokenizer's input."
    )
    chrf_word_order: Literal[0, 2] = Field(0, description="0 for chrF, 2 for chrF++.")
    rouge_stemmer: bool = Field(False, description="ROUGE: Porter-stem words longer than 3 letters (use_stemmer).")
    rouge_tokenize: Literal["default", "whitespace"] = Field(
        "default",
        description="ROUGE: rouge-score's tokenizer (English only: it drops every letter outside a-z and digits), "
        "or whitespace splitting for other languages.",
    )


class GenerationRequest(IntervalRequest, TextOptions):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hypotheses": ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog"],
                    "references": ["the cat sat on the mat", "the quick brown fox jumped over the lazy dog"],
                    "metrics": ["bleu", "chrf", "ter"],
                }
            ]
        }
    )

    hypotheses: list[StrictStr]
    references: list[Reference] = Field(description="Per hypothesis: one reference, or a list of them.")
    metrics: list[GenerationMetric] = Field(default_factory=_bleu_only, min_length=1)
    sentence_level: bool = Field(
        False, description="Per-segment scores too; sentence-level BLEU comes with a warning (use chrF)."
    )


class GenerationScore(BaseModel):
    score: float | None = Field(
        description="BLEU, chrF, TER: sacrebleu's corpus score. ROUGE: 100 x the mean of rouge-score's per-segment "
        "F-measure. exact_match: 100 x the share of segments equal to a reference."
    )
    signature: str
    precision: float | None = Field(None, description="ROUGE: 100 x the mean per-segment precision.")
    recall: float | None = Field(None, description="ROUGE: 100 x the mean per-segment recall.")
    precisions: list[float] | None = None
    bp: float | None = None
    sys_len: int | None = None
    ref_len: int | None = None
    sentence_scores: list[float | None] | None = None
    interval: Interval | None = None


class GenerationResponse(BaseModel):
    scores: dict[str, GenerationScore]
    warnings: list[str] = Field(default_factory=list)


class PairedRequest(MetricRequest):
    test: PairedTestName = "paired_bootstrap"
    n_resamples: int = Field(1000, ge=1)
    seed: int | None = Field(0, ge=0, description="Seed for a reproducible test; null draws a fresh one.")
    confidence_level: float = Field(0.95, gt=0, lt=1)


class GenerationCompareRequest(PairedRequest, TextOptions):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "generation",
                    "references": ["the cat sat on the mat", "it is raining today", "we won the match"],
                    "baseline": ["a cat on a mat", "it rains", "we won"],
                    "candidate": ["the cat sat on the mat", "it is raining", "we won the game"],
                    "metrics": ["bleu", "chrf"],
                }
            ]
        }
    )

    task: Literal["generation"] = "generation"
    references: list[Reference]
    baseline: list[StrictStr]
    candidate: list[StrictStr]
    metrics: list[GenerationMetric] = Field(default_factory=_bleu_only, min_length=1)


class ClassificationCompareRequest(PairedRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "classification",
                    "references": ["fresh", "rotten", "fresh", "rotten", "fresh", "rotten"],
                    "baseline": ["fresh", "fresh", "fresh", "rotten", "rotten", "rotten"],
                    "candidate": ["fresh", "rotten", "fresh", "rotten", "rotten", "rotten"],
                    "metrics": ["accuracy", "f1"],
                }
            ]
        }
    )

    task: Literal["classification"]
    references: list[LabelOrLabels] = Field(
        description="One label per example, or a list of labels per example for multilabel."
    )
    baseline: list[LabelOrLabels]
    candidate: list[LabelOrLabels]
    metrics: list[ClassificationMetric] = Field(default_factory=_accuracy_and_f1, min_length=1)
    average: Average | None = "macro"
    labels: list[Label] | None = None
    pos_label: Label = 1
    zero_division: ZeroDivision = 0


class PairedResult(BaseModel):
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    p_value: float | None
    candidate_interval: Interval | None
    baseline_interval: Interval | None = None
    test: PairedTestName
    n_resamples: int
    signature: str | None = None


class CompareResponse(BaseModel):
    results: dict[str, PairedResult]
