"""Contracts of the evaluation-job endpoints: create, read, list, compare."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from service.schemas.metrics import Calibration, PairedResult, PairedTestName
from service.schemas.test_sets import ReleasedInterval, SliceReport, TestSetRef, UtcDatetime, WorstSlice

Status = Literal["queued", "running", "succeeded", "failed"]
MAX_ID = 2**31 - 1
TestSetId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
TestSetName = Annotated[str, Field(strict=True, min_length=1, max_length=100)]


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"test_set": "rotten-tomatoes"}]})

    test_set: TestSetId | TestSetName = Field(description="A test set id, or a name for its latest version.")
    metrics: list[str] | None = Field(
        None,
        min_length=1,
        description="Default: all of the task's (accuracy, precision, recall, f1 / bleu, chrf, ter, rouge1, rouge2, "
        "rougeL, rougeLsum, exact_match).",
    )
    extra_metrics: list[str] = Field(
        default_factory=list, description="Paths of local evaluate modules, from HELDOUT_EVALUATE_MODULES."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=MAX_ID, description="Generation models: tokens to generate per input."
    )
    chat: bool = Field(
        False,
        description="Generation models: send each input as a user message through the model's chat template, "
        "as /v1/chat/completions serves it.",
    )
    system: str | None = Field(
        None, min_length=1, max_length=100_000, description="With chat: a system message before each input."
    )
    generalization_gap: bool = Field(
        False,
        description="Also score the model on the set's kept training sample (an upload's training_file) and report "
        "the gap, training minus blind-set score, with an unpaired bootstrap interval.",
    )


class EvaluationCreated(BaseModel):
    id: int
    status: Status


class Progress(BaseModel):
    done: int
    total: int


class HumanRatings(BaseModel):
    n_items: int = Field(description="Outputs with at least one rating.")
    n_ratings: int
    raters: int = Field(description="Distinct raters.")
    mean: float = Field(description="Mean over rated outputs of each output's mean rating.")
    interval: ReleasedInterval = Field(description="Percentile bootstrap over rated outputs.")
    krippendorff_alpha: float | None = Field(
        description="Krippendorff's alpha at the interval level (the krippendorff package's); null when no output "
        "has two ratings or all ratings are equal."
    )


class GapValue(BaseModel):
    value: float | None
    low: float | None
    high: float | None
    level: float


class Generalization(BaseModel):
    train_metrics: dict[str, float | None] = Field(description="The scores on the kept training sample.")
    gap: dict[str, GapValue] = Field(description="Per metric: training minus blind-set score, unpaired bootstrap.")
    overfitting: bool | None = Field(
        description="The headline metric's gap (in its better direction, 0-1 scale) exceeds HELDOUT_OVERFITTING_GAP "
        "at its interval's lower bound; null without intervals (HELDOUT_SCORING_RESAMPLES=0)."
    )
    metric: str = Field(description="The headline metric overfitting is judged on (the set's ladder metric).")
    train_size: int


class EvaluationInfo(BaseModel):
    id: int
    status: Status
    progress: Progress
    model: str
    model_version: str
    test_set: TestSetRef
    test_set_sha256: str
    metrics: dict[str, float | None]
    intervals: dict[str, ReleasedInterval]
    calibration: Calibration | None = Field(
        None, description="Single-label classifiers: ECE, Brier, log loss and reliability bins of the probabilities."
    )
    slices: dict[str, SliceReport] | None = Field(
        None,
        description="Grouped open sets: per group of at least HELDOUT_MIN_SLICE_SIZE records (smaller groups pooled "
        "as `other`). Never for a Ladder set.",
    )
    worst_slice: WorstSlice | None = Field(None, description="The slice scoring worst on the set's headline metric.")
    generalization: Generalization | None = Field(None, description="With generalization_gap: the gap and its verdict.")
    error: str | None = None
    human: HumanRatings | None = Field(None, description="Generation evaluations: the human ratings, once rated.")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class EvaluationList(BaseModel):
    items: list[EvaluationInfo]
    total: int


class CompareRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"baseline": 1, "candidate": 2, "test": "paired_bootstrap"}]}
    )

    baseline: int = Field(ge=1, le=MAX_ID)
    candidate: int = Field(ge=1, le=MAX_ID)
    test: PairedTestName = "paired_bootstrap"
    n_resamples: int = Field(1000, ge=1)
    seed: int | None = Field(0, ge=0)


class EvaluationCompare(BaseModel):
    baseline: int
    candidate: int
    test_set: TestSetRef
    results: dict[str, PairedResult]


class OutputItem(BaseModel):
    id: str
    source: str
    output: str = Field(description="What the model generated for the source.")


class OutputsPage(BaseModel):
    items: list[OutputItem]
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null at the end.")
    total: int


class RatingItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(min_length=1, max_length=256, description="A record id, as the outputs page gives it.")
    rater: StrictStr = Field(min_length=1, max_length=100, description="Who rated; their later rating replaces it.")
    rating: Annotated[StrictInt | StrictFloat, Field(allow_inf_nan=False)] = Field(
        description="On the test set's rating_scale, ends included."
    )


class RatingsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [{"id": "r1", "rater": "alice", "rating": 4}]}]}
    )

    items: list[RatingItem] = Field(min_length=1, max_length=10_000)


class RatingsStored(BaseModel):
    evaluation: int
    received: int
    human: HumanRatings


class MetricAgreement(BaseModel):
    kendall_tau: float | None = Field(description="System-level Kendall tau-b between the metric and the human mean.")
    kendall_tau_interval: ReleasedInterval
    pearson_r: float | None
    pearson_r_interval: ReleasedInterval


class RatedSystem(BaseModel):
    evaluation: int
    model: str
    model_version: str
    human_mean: float | None
    rated_items: int | None
    metrics: dict[str, float | None]


class AgreementReport(BaseModel):
    test_set: TestSetRef
    n_resamples: int = Field(description="Bootstrap resamples over the set's items behind the intervals.")
    systems: list[RatedSystem]
    metrics: dict[str, MetricAgreement]
