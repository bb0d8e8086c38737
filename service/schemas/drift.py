"""Contracts of the drift endpoints: references, checks and their reports."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# SQLite hands back naive datetimes; every stored time is UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]
CheckStatus = Literal["queued", "running", "succeeded", "failed"]


def _in_utc(moment: datetime) -> datetime:
    """Windows are compared and stored in UTC; a time near year 1 or 9999 can have no UTC equivalent."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie between years 1 and 9999 once converted to UTC") from None


WindowBound = Annotated[AwareDatetime, AfterValidator(_in_utc)]


def _check_window(start: datetime | None, end: datetime | None) -> None:
    if (start is None) != (end is None):
        raise ValueError("give both from and to, or neither")
    if start is not None and end is not None and start >= end:
        raise ValueError("from must be before to")


class ReferenceRequest(BaseModel):
    """Either a test set (the served classifier computes the features of its inputs) or a window of traffic."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{"test_set": 1}]})

    test_set: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Test set id; its inputs, never its labels, are used."
    )
    start: WindowBound | None = Field(None, alias="from", description="Start of a window of logged traffic.")
    end: WindowBound | None = Field(None, alias="to", description="End (exclusive) of the window.")
    model: str | None = Field(
        None, min_length=1, max_length=200, description="Whose logged traffic; default the served model."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        _check_window(self.start, self.end)
        if (self.test_set is None) == (self.start is None):
            raise ValueError("give either test_set or from and to")
        if self.test_set is not None and self.model is not None:
            raise ValueError("model applies to a window of traffic; a test set reference is of the served model")
        return self


class ReferenceInfo(BaseModel):
    id: int
    model: str
    version: int = Field(description="1 for a model's first reference, then one more for each.")
    source: dict[str, Any] = Field(description='{"test_set": id, "name": ...} or {"from": ..., "to": ...}.')
    rows: int
    columns: list[str] = Field(description="Features the reference holds, so checks can compare.")
    created_at: UtcDatetime


class ReferenceList(BaseModel):
    items: list[ReferenceInfo]
    total: int


class CheckRequest(BaseModel):
    """Every field is optional: ``{}`` checks the served model's last HELDOUT_DRIFT_WINDOW against its newest
    reference."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{"reference": 1}]})

    reference: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Reference id; default the newest of the served model."
    )
    start: WindowBound | None = Field(None, alias="from", description="Start of the window to check.")
    end: WindowBound | None = Field(None, alias="to", description="End (exclusive) of the window.")

    @model_validator(mode="after")
    def _window(self) -> Self:
        _check_window(self.start, self.end)
        return self


class WindowInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: UtcDatetime = Field(alias="from")
    end: UtcDatetime = Field(alias="to")
    rows: int | None = Field(description="Logged predictions compared (the newest HELDOUT_DRIFT_MAX_ROWS at most).")


class ColumnResult(BaseModel):
    column: str
    method: str
    threshold: float
    score: float | None = Field(description="p-value for tests (drift below threshold), else a distance or ROC AUC.")
    drifted: bool


class EstimatedValue(BaseModel):
    value: float
    low: float
    high: float


class EstimatedPerformance(BaseModel):
    """CBPE: the served version's probabilities on the window, through maps fitted on a blind-set evaluation."""

    accuracy: EstimatedValue = Field(description="Mean calibrated confidence, with a Bernoulli interval.")
    f1: EstimatedValue = Field(description="Macro F1 of the expected confusion matrix, with a categorical interval.")
    rows: int = Field(description="Predictions of the window's model version the estimate covers.")
    model_version: str
    evaluation: int = Field(description="The evaluation whose blind-set predictions the maps were fitted on.")


class CheckInfo(BaseModel):
    id: int
    model: str
    status: CheckStatus
    reference: int
    tick: UtcDatetime | None = Field(description="The cron tick of a scheduled check; null when requested.")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    window: WindowInfo
    columns: list[ColumnResult] | None
    share_of_drifted_columns: float | None
    dataset_drift: bool | None
    estimated_performance: EstimatedPerformance | None = Field(
        None, description="Label-free accuracy and macro F1 of the window (no concept shift assumed)."
    )
    estimated_performance_reason: str | None = Field(None, description="Why there is no estimate, when there is none.")
    error: str | None


class CheckList(BaseModel):
    items: list[CheckInfo]
    total: int
