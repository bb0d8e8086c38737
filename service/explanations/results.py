"""What an explanation answers: attributions per token and per word, and how faithful they are."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Attribution:
    text: str
    start: int
    """Character offsets into the input: ``input[start:end] == text``."""
    end: int
    attribution: float


@dataclass(frozen=True, slots=True)
class Faithfulness:
    """ERASER's measures (DeYoung et al., 2020), each averaged over the top 10, 20 and 50% of the words."""

    comprehensiveness: float
    """Drop in the target's probability when the top-attributed words are deleted."""
    sufficiency: float
    """Drop in the target's probability when only the top-attributed words are kept."""
    random_comprehensiveness: float
    """Comprehensiveness of randomly chosen words (seeded): what chance achieves."""


@dataclass(frozen=True, slots=True)
class Explanation:
    id: str
    label: str | list[str]
    """The model's output: its predicted label(s), or a causal LM's greedy continuation."""
    score: float | list[float]
    """Probability of the label(s); for a causal LM, of its greedy continuation."""
    target: str
    """What is explained: a label, or a continuation."""
    tokens: list[Attribution]
    words: list[Attribution]
    convergence_delta: float | None
    faithfulness: Faithfulness | None
    truncated: bool


@dataclass(frozen=True, slots=True)
class Explained:
    model: str
    model_version: str
    method: str
    explanations: list[Explanation]
