"""What the serving engine answers: the model that answered, and one output and id per input text.

Ids are drawn for every output; only those of recorded calls name a prediction-log record (for feedback).
"""

from dataclasses import dataclass

from service.inference.classifier import ClassOutput
from service.inference.generator import GenOutput
from service.inference.model_dir import ModelRef


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    version: str
    """sha256 over the weight files; for an adapter, over the base's version and the adapter's."""
    task: str
    device: str
    dtype: str
    labels: list[str]
    """Class labels in index order; empty for generators."""
    max_length: int
    """Longest input in tokens; longer inputs are truncated and flagged."""
    base_model: ModelRef | None = None
    """For a LoRA adapter: the base model it is put on."""
    adapter: ModelRef | None = None


@dataclass(frozen=True, slots=True)
class Classified:
    model: str
    model_version: str
    labels: list[str]
    """The model's labels, in the order of each output's ``probabilities``."""
    ids: list[str]
    outputs: list[ClassOutput]


@dataclass(frozen=True, slots=True)
class Generated:
    model: str
    model_version: str
    ids: list[str]
    outputs: list[GenOutput]
