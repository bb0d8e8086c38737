"""What a caller may ask of an explanation, and its defaults."""

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_STEPS = 50
# Enough for a review sentence of about 20 words: LIME and kernel SHAP fit one coefficient per word.
DEFAULT_SAMPLES = 200


class Method(StrEnum):
    integrated_gradients = "integrated_gradients"
    attention = "attention"
    lime = "lime"
    kernel_shap = "kernel_shap"
    occlusion = "occlusion"


# Methods that attribute a causal LM's continuation to its prompt; the others explain classifiers only.
GENERATOR_METHODS = (Method.integrated_gradients, Method.occlusion)


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    method: Method
    target: str | None = None
    """A label name (classifiers; default the predicted label) or a continuation (causal LMs; default the
    greedy one)."""
    n_steps: int | None = None
    """Integrated gradients' integration steps; None is DEFAULT_STEPS, or HELDOUT_EXPLAIN_MAX_STEPS if lower."""
    n_samples: int | None = None
    """LIME's and kernel SHAP's samples; None is DEFAULT_SAMPLES, or HELDOUT_EXPLAIN_MAX_SAMPLES if lower."""
    seed: int = 0
    """Seeds LIME's and kernel SHAP's sampling and the random words of random_comprehensiveness."""
    faithfulness: bool = True
