"""Contract of /v1/feedback: delayed ground truth for logged predictions."""

from collections import Counter
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_ITEMS = 10_000
PredictionId = Annotated[str, StringConstraints(min_length=1, max_length=36, strict=True)]
LabelText = Annotated[str, StringConstraints(min_length=1, max_length=200, strict=True)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId = Field(description="The id /v1/predict returned with the prediction.")
    label: LabelText = Field(description="The true label; a later item for the same prediction replaces it.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"items": [{"prediction_id": "5a0c3a54-7a0e-4a43-9d43-5f4f2d9b8b1e", "label": "fresh"}]}]
        },
    )

    items: list[FeedbackItem] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[FeedbackItem]) -> list[FeedbackItem]:
        counts = Counter(item.prediction_id for item in items)
        repeated = sorted(pid for pid, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"prediction ids repeated in one request: {', '.join(repeated[:20])}")
        return items


class OnlineScores(BaseModel):
    model: str
    n: int = Field(description="Feedback items in the window the scores cover.")
    accuracy: float
    f1: float = Field(description="Macro F1 over the labels present in the window.")


class FeedbackResponse(BaseModel):
    accepted: int
    online: list[OnlineScores] = Field(description="Scores of each model the batch touched, over its feedback window.")
