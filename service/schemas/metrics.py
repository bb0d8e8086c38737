"""Contracts of the stateless metric endpoints: /v1/metrics/classification, /generation, /compare."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Label = StrictInt | StrictStr
LabelOrLabels = Label | list[Label]
Average = Literal["macro", "micro", "weighted", "binary"]
ZeroDivision = Literal[0, 1, "nan"]


class IntervalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confidence_level: float = Field(0.95, gt=0, lt=1)
    n_resamples: int = Field(1000, ge=0, description="Bootstrap resamples; 0 turns intervals off.")
    seed: int | None = Field(0, description="Seed for reproducible intervals; null draws a fresh one.")


class ClassificationRequest(IntervalRequest):
    predictions: list[LabelOrLabels] = Field(
        description="One label per example, or a list of labels per example for multilabel."
    )
    references: list[LabelOrLabels]
    average: Average | None = "macro"
    labels: list[Label] | None = None
    pos_label: Label = 1
    zero_division: ZeroDivision = 0


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


class MajorityBaseline(BaseModel):
    label: Label
    accuracy: float | None
    f1: float | None


Score = float | None | list[float | None]


class ClassificationResponse(BaseModel):
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
