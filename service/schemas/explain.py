"""Contracts of /v1/explain: what to explain and how, and per-token and per-word attributions."""

from pydantic import BaseModel, ConfigDict, Field

from service.explanations.options import DEFAULT_SAMPLES, DEFAULT_STEPS, Method
from service.schemas.inference import InputText


class ExplainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"inputs": ["A warm, funny film."], "method": "occlusion"}]}
    )

    inputs: list[InputText] = Field(min_length=1, description="Texts to explain (at most HELDOUT_EXPLAIN_MAX_INPUTS).")
    method: Method = Field(
        description="integrated_gradients, attention, lime, kernel_shap or occlusion; a causal LM takes "
        "integrated_gradients and occlusion."
    )
    target: str | None = Field(
        None, max_length=10_000, description="The label to explain; default each input's predicted label."
    )
    n_steps: int | None = Field(
        None,
        ge=1,
        description=f"Integrated gradients' steps (at most HELDOUT_EXPLAIN_MAX_STEPS); unset, {DEFAULT_STEPS} or the "
        "cap if that is lower.",
    )
    n_samples: int | None = Field(
        None,
        ge=2,
        description=f"LIME's and kernel SHAP's samples (at most HELDOUT_EXPLAIN_MAX_SAMPLES); unset, {DEFAULT_SAMPLES} "
        "or the cap if that is lower.",
    )
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seeds LIME's and kernel SHAP's samples and random_comprehensiveness."
    )
    faithfulness: bool = Field(True, description="Score each explanation's faithfulness (ERASER).")


class Attribution(BaseModel):
    text: str
    start: int = Field(description="Character offset of the first character in the input.")
    end: int = Field(description="Character offset past the last character: input[start:end] == text.")
    attribution: float


class Faithfulness(BaseModel):
    comprehensiveness: float = Field(
        description="Mean drop of the target's probability when the top 10, 20 and 50% of the words are deleted."
    )
    sufficiency: float = Field(description="Mean drop when only those words are kept.")
    random_comprehensiveness: float = Field(description="Comprehensiveness of as many words chosen at random.")


class Explanation(BaseModel):
    id: str
    label: str | list[str] = Field(
        description="The predicted label (multi-label models: every label above the threshold)."
    )
    score: float | list[float] = Field(description="Probability of the label (of each label).")
    target: str = Field(description="The label whose probability the attributions explain.")
    tokens: list[Attribution] = Field(description="Every non-special input token.")
    words: list[Attribution] = Field(description="Each whitespace-separated word: the sum of its tokens.")
    convergence_delta: float | None = Field(
        description="Integrated gradients: sum of attributions minus (p(input) - p(baseline)); null otherwise."
    )
    faithfulness: Faithfulness | None = Field(description="Null when the request turned it off.")
    truncated: bool = Field(description="The input was longer than the model's maximum length; later words get 0.")


class ExplainResponse(BaseModel):
    model: str
    model_version: str
    method: Method
    explanations: list[Explanation]
