"""One batched ``generate`` call of a causal or seq2seq LM, decoded into texts and token counts."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.inference.encoding import Encoded, Side, TextEncoder
from service.inference.loader import LoadedModel
from service.tasks import ModelTask


@dataclass(frozen=True)
class GenerationParams:
    """Requests merge into one batch only when these are equal: ``generate`` takes them per call."""

    max_new_tokens: int
    num_beams: int
    do_sample: bool
    temperature: float
    seed: int | None


@dataclass(frozen=True)
class GenOutput:
    text: str
    tokens: int
    """Generated tokens, up to but excluding the end-of-sequence token."""
    truncated: bool
    n_tokens: int


class Generator:
    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._encoder = TextEncoder(loaded.tokenizer, loaded.token_ids.pad)
        self._causal = loaded.task is ModelTask.causal_lm
        self._side: Side = "left" if self._causal else "right"

    def input_limit(self, max_new_tokens: int) -> int:
        """A causal LM's prompt and continuation share its positions; a seq2seq encoder has its own."""
        if self._causal:
            return self._loaded.max_length - max_new_tokens
        return self._loaded.max_length

    def encode(self, texts: Sequence[str], params: GenerationParams) -> list[Encoded]:
        # Prompts of a decoder-only model keep their end and pad on the left, next to the continuation.
        return self._encoder.encode(texts, self.input_limit(params.max_new_tokens), self._side)

    def __call__(self, encoded: Sequence[Encoded], params: GenerationParams) -> list[GenOutput]:
        """One ``generate`` call over already tokenized prompts (see ``encode``)."""
        ids = self._loaded.token_ids
        stand_in = [ids.stand_in]
        input_ids, attention_mask = self._encoder.pad([e.ids or stand_in for e in encoded], self._side)
        options: dict[str, object] = {
            "max_new_tokens": params.max_new_tokens,
            "num_beams": params.num_beams,
            "do_sample": params.do_sample,
            "pad_token_id": ids.pad,
        }
        if params.do_sample:
            options["temperature"] = params.temperature
        if params.seed is not None:
            torch.manual_seed(params.seed)
        device = self._loaded.device
        with torch.inference_mode():
            sequences = self._loaded.model.generate(  # type: ignore[operator]
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **options
            )
        # A causal LM echoes the prompt; a seq2seq decoder starts with its start token.
        generated = sequences[:, input_ids.shape[1] :] if self._causal else sequences[:, 1:]
        rows = [self._until_eos(row) for row in generated.cpu().tolist()]
        texts_out = self._encoder.decode(rows)
        return [
            GenOutput(text, len(row), e.truncated, len(e.ids))
            for text, row, e in zip(texts_out, rows, encoded, strict=True)
        ]

    def _until_eos(self, row: list[int]) -> list[int]:
        eos = self._loaded.token_ids.eos
        return row[: row.index(eos)] if eos is not None and eos in row else row
