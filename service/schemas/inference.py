"""Contracts of the serving endpoints: /v1/models, /v1/predict and /v1/generate."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from service.inference.options import DEFAULT_NEW_TOKENS, MAX_BEAMS

# The engine takes empty texts (an evaluation may hold some); the API asks its clients for at least a character.
InputText = Annotated[StrictStr, StringConstraints(min_length=1)]


class WeightsInfo(BaseModel):
    name: str = Field(description="Directory name.")
    version: str = Field(description="sha256 over its weight files (an adapter's: and its adapter_config.json).")


class ModelInfo(BaseModel):
    name: str
    version: str = Field(description="sha256 over the weight files; for an adapter, over its base's and its own.")
    task: str = Field(description="sequence-classification, multi-label-classification, causal-lm or seq2seq-lm.")
    device: str
    dtype: str
    labels: list[str] = Field(description="Class labels in index order; empty for generators.")
    max_length: int = Field(description="Longest input in tokens; longer inputs are truncated and flagged.")
    base_model: WeightsInfo | None = Field(None, description="For a LoRA adapter: the base model it is put on.")
    adapter: WeightsInfo | None = Field(None, description="The LoRA adapter served on base_model, if any.")


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "inputs": ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate cliches."],
                    "return_scores": True,
                }
            ]
        },
    )

    inputs: list[InputText] = Field(min_length=1, description="Texts to classify (at most HELDOUT_MAX_INPUTS).")
    return_scores: bool = Field(False, description="Also return every label's probability.")


class Prediction(BaseModel):
    id: str = Field(description="Prediction id, for feedback and drift.")
    label: str | list[str] = Field(
        description="The predicted label; for multi-label models every label above the threshold."
    )
    score: float | list[float] = Field(description="Probability of the label (of each label, for multi-label models).")
    scores: dict[str, float] | None = Field(None, description="Every label's probability, when return_scores is set.")
    truncated: bool = Field(description="The input was longer than the model's maximum length and was cut.")


class PredictResponse(BaseModel):
    model: str
    model_version: str
    predictions: list[Prediction]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": ["Translate to French: cheese =>"], "max_new_tokens": 16}]},
    )

    inputs: list[InputText] = Field(min_length=1, description="Prompts (at most HELDOUT_MAX_INPUTS).")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description=f"Tokens to generate at most (capped by HELDOUT_MAX_NEW_TOKENS); unset, {DEFAULT_NEW_TOKENS} "
        "or the cap if that is lower.",
    )
    num_beams: int = Field(1, ge=1, le=MAX_BEAMS, description="Beam width; 1 is greedy or plain sampling.")
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature; used only with do_sample.")
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="With do_sample, makes the same request give the same outputs."
    )


class Generation(BaseModel):
    id: str
    text: str
    tokens: int = Field(description="Tokens generated, end-of-sequence excluded.")
    truncated: bool = Field(description="The prompt was longer than the model allows and was cut.")


class GenerateResponse(BaseModel):
    model: str
    model_version: str
    outputs: list[Generation]
