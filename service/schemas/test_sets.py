"""Contracts of the blind test-set endpoints: upload, metadata with audit, inputs, scoring."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Json, StrictInt, StrictStr

Label = StrictInt | StrictStr
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
RatingScale = tuple[FiniteFloat, FiniteFloat]
# SQLite hands back naive datetimes; every stored time is UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class UploadForm(BaseModel):
    """The non-file fields of the multipart upload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "my-set", "task": "classification", "ladder": True, "daily_budget": 20}]
        },
    )

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    task: Literal["classification", "generation"]
    format: Literal["jsonl", "csv"] | None = Field(None, description="Default: from the file name, else sniffed.")
    average: Literal["macro", "micro", "weighted", "binary", "samples"] | None = Field(
        None, description="Classification: how precision, recall and F1 average over labels (default macro)."
    )
    pos_label: str | None = Field(None, max_length=256, description="The positive label, with average=binary.")
    daily_budget: int | None = Field(None, ge=1, description="Scored submissions per key per UTC day.")
    ladder: bool = Field(False, description="Release scores through the Ladder (Blum & Hardt 2015).")
    ladder_metric: str | None = Field(None, description="The metric the ladder compares: default f1 or bleu.")
    ladder_step: float = Field(0.01, gt=0, le=0.5, description="Rounding of released scores, as a share of scale.")
    ladder_alpha: float = Field(0.05, gt=0, lt=1, description="Paired-test p-value a new best must beat.")
    rouge_tokenize: Literal["default", "whitespace"] | None = Field(
        None,
        description="Generation: rouge-score's tokenizer (default; English only) or whitespace splitting.",
    )
    rouge_stemmer: bool | None = Field(None, description="Generation: Porter-stem ROUGE tokens (default false).")
    rating_scale: Json[RatingScale] | None = Field(
        None, description='Generation: lowest and highest human rating, as JSON: "[1, 5]" (the default).'
    )


FILE_FIELDS = ("file", "training_file", "training_fingerprints")


def upload_openapi() -> dict[str, Any]:
    """The multipart request body, documented by hand: the route parses it itself, after auth. Swagger UI
    fills a form's fields from each property's ``example``, so the form's example is spread over them."""
    schema = UploadForm.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    (example,) = schema["examples"]
    properties = {
        "file": {**binary, "description": "The test set: JSONL or CSV records."},
        **{
            name: {**field, "example": example[name]} if name in example else field
            for name, field in schema["properties"].items()
        },
        "training_file": {
            **binary,
            "description": "Training data (JSONL, CSV or .txt) for the contamination check; a seeded sample of its "
            "labelled records (HELDOUT_TRAINING_SAMPLE) is kept for the generalization gap.",
        },
        "training_fingerprints": {**binary, "description": "One normalised-input sha256 per line, instead."},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file", "name", "task"], "properties": properties}
                }
            },
        }
    }


class SetSettings(BaseModel):
    average: str | None
    pos_label: Label | None
    daily_budget: int | None
    ladder: bool
    ladder_metric: str
    ladder_step: float
    ladder_alpha: float
    rouge_tokenize: str = "default"
    rouge_stemmer: bool = False
    rating_scale: tuple[float, float] | None = Field(
        None, description="Generation: the human rating scale, [lowest, highest] (null on sets stored before it: 1-5)."
    )


class LengthStats(BaseModel):
    min: int
    max: int
    mean: float
    p50: int
    p90: int
    p99: int


class Groups(BaseModel):
    groups: int
    records: int
    example_ids: list[list[str]]


class Duplicates(BaseModel):
    exact: Groups
    normalized: Groups = Field(description="Same input after NFKC, case folding and punctuation/space folding.")
    conflicting_targets: Groups = Field(description="Normalised duplicates whose labels or references differ.")


class EmptyInputs(BaseModel):
    count: int
    example_ids: list[str]


class ContaminationReport(BaseModel):
    training_inputs: int = Field(description="Distinct normalised training inputs.")
    contaminated: int = Field(description="Test records whose normalised input occurs in training.")
    share: float
    example_ids: list[str]


class TrainingSampleReport(BaseModel):
    labelled: int = Field(description="Records of training_file with a usable label (or references).")
    kept: int = Field(description="Of those, the seeded sample kept for the generalization gap (never released).")


class Audit(BaseModel):
    records: int
    empty_inputs: EmptyInputs
    duplicates: Duplicates
    label_distribution: dict[str, int] | None
    lengths: dict[str, LengthStats | None]
    contamination: ContaminationReport | None
    ignored_fields: list[str]
    warnings: list[str]
    training_sample: TrainingSampleReport | None = None


class TestSetInfo(BaseModel):
    id: int
    name: str
    version: int
    task: Literal["classification", "generation"]
    sha256: str = Field(description="sha256 of the canonical JSONL form of the records.")
    size: int = Field(description="Number of records.")
    labels: list[Label] | None = Field(description="Classification: the label set.")
    multilabel: bool
    settings: SetSettings
    audit: Audit
    created_at: UtcDatetime


class TestSetList(BaseModel):
    items: list[TestSetInfo]
    total: int


class InputItem(BaseModel):
    id: str
    text: str


class InputsPage(BaseModel):
    items: list[InputItem]
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null at the end.")
    total: int


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"predictions": {"rt-00000": "rotten", "rt-00001": "fresh", "rt-00002": "fresh"}}]
        },
    )

    predictions: dict[StrictStr, Label | list[Label]] = Field(
        description="{id: prediction} for every record: a label, a label list (multilabel) or a generated text."
    )


class TestSetRef(BaseModel):
    id: int
    name: str
    version: int
    sha256: str


class ReleasedInterval(BaseModel):
    low: float | None
    high: float | None
    level: float


class SliceReport(BaseModel):
    metrics: dict[str, float | None]
    intervals: dict[str, ReleasedInterval]
    support: int


class WorstSlice(BaseModel):
    group: str
    metric: str
    value: float | None


class ScoreResponse(BaseModel):
    test_set: TestSetRef
    mode: Literal["open", "ladder"]
    metrics: dict[str, float | None] = Field(
        description="Open mode: every metric. Ladder mode: the ladder metric alone (admin keys: every metric)."
    )
    intervals: dict[str, ReleasedInterval] = Field(description="Intervals of the metrics released.")
    budget_remaining: int | None = Field(description="Scored submissions left to this key today; null: no budget.")
    slices: dict[str, SliceReport] | None = Field(
        None,
        description="Open mode, grouped sets: per group of at least HELDOUT_MIN_SLICE_SIZE records, smaller groups "
        "pooled as `other`. Never under the Ladder.",
    )
    worst_slice: WorstSlice | None = None
