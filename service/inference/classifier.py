"""One batched forward pass of a sequence classifier, turned into labels and probabilities."""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from monitors.projection import EmbeddingSketch
from service.inference.encoding import Encoded, TextEncoder
from service.inference.loader import LoadedModel
from service.tasks import ModelTask


@dataclass(frozen=True)
class ClassOutput:
    label: str | list[str]
    """The argmax label; for multi-label models every label above the threshold."""
    score: float | list[float]
    probabilities: list[float]
    """Softmax (single-label) or per-label sigmoid (multi-label) probabilities, in label order."""
    truncated: bool
    n_tokens: int
    n_unknown: int = 0
    """Tokens the tokenizer could only map to its unknown token."""
    embedding: list[float] | None = None
    """A fixed random sketch of the mean-pooled last hidden state (``monitors.projection``), for drift checks."""


class Classifier:
    def __init__(self, loaded: LoadedModel, threshold: float) -> None:
        self._loaded = loaded
        self._encoder = TextEncoder(loaded.tokenizer, loaded.token_ids.pad)
        self._threshold = threshold
        unk = getattr(loaded.tokenizer.model, "unk_token", None)
        self._unk_id = loaded.tokenizer.token_to_id(unk) if unk else None
        # The encoder's last hidden state, caught on its way to the head rather than asking for every layer's;
        # per thread, as batches run on several worker threads at once.
        self._caught = threading.local()
        hidden_size = getattr(loaded.model.config, "hidden_size", None)
        self._sketch = EmbeddingSketch(hidden_size) if isinstance(hidden_size, int) else None
        if self._sketch is not None:
            loaded.model.base_model.register_forward_hook(self._keep_hidden)

    def _keep_hidden(self, _module: Any, _inputs: Any, output: Any) -> None:
        self._caught.hidden = output[0]

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        return self._encoder.encode(texts, self._loaded.max_length)

    def _forward(self, encoded: Sequence[Encoded]) -> tuple[torch.Tensor, list[list[float]] | None]:
        stand_in = [self._loaded.token_ids.stand_in]
        input_ids, attention_mask = self._encoder.pad([e.ids or stand_in for e in encoded])
        device = self._loaded.device
        with torch.inference_mode():
            logits = self._loaded.model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
            ).logits.float()
            sketches = None
            hidden: torch.Tensor | None = getattr(self._caught, "hidden", None)
            if self._sketch is not None and hidden is not None:
                mask = attention_mask.to(device).unsqueeze(-1).float()
                pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                sketches = self._sketch(pooled.cpu().numpy())
            self._caught.hidden = None
        probs = torch.sigmoid(logits) if self._loaded.task is ModelTask.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu(), sketches

    def __call__(self, encoded: Sequence[Encoded]) -> list[ClassOutput]:
        """One forward pass over examples already tokenized by ``encode``."""
        probs, sketches = self._forward(encoded)
        labels = self._loaded.labels
        outputs = []
        for i, (row, e) in enumerate(zip(probs.tolist(), encoded, strict=True)):
            if self._loaded.task is ModelTask.multi_label:
                chosen = [i for i, p in enumerate(row) if p > self._threshold]
                label: str | list[str] = [labels[i] for i in chosen]
                score: float | list[float] = [row[i] for i in chosen]
            else:
                best = max(range(len(row)), key=row.__getitem__)
                label, score = labels[best], row[best]
            n_unknown = e.ids.count(self._unk_id) if self._unk_id is not None else 0
            embedding = sketches[i] if sketches is not None else None
            outputs.append(ClassOutput(label, score, row, e.truncated, len(e.ids), n_unknown, embedding))
        return outputs
