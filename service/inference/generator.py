"""Batched ``generate`` calls of a causal or seq2seq LM over rows with options of their own.

Rows share a call whatever their ``max_new_tokens``, temperature, top-p or stop strings (see
``service.inference.rows``). Beam search is the exception: ``generate`` takes it per call and streams
nothing, so its rows batch only with rows of the same ``BeamSearch`` and are decoded from the output.
The static ``generate`` path is kept on every device: transformers' continuous batching was about 100×
slower on a CPU with the tiny test models.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from service.inference.encoding import Encoded, Side, TextEncoder
from service.inference.loader import LoadedModel
from service.inference.rows import FinishReason, Progress, Row, RowSampling, RowStopping, RowStreamer
from service.tasks import ModelTask


@dataclass(frozen=True)
class BeamSearch:
    """Options of a beam search batch: every row in it has these."""

    max_new_tokens: int
    num_beams: int
    do_sample: bool
    temperature: float


@dataclass(frozen=True)
class BatchKey:
    """Rows with equal keys may share a ``generate`` call.

    Seeded sampling seeds torch's one global generator, so each seeded request gets a key of its own
    (``nonce``) and runs alone: a repeated call then draws the same numbers whatever else is queued.
    """

    beams: BeamSearch | None = None
    seed: int | None = None
    nonce: int = 0


@dataclass(frozen=True)
class GenOutput:
    text: str
    tokens: int
    """Generated tokens, up to but excluding the end-of-sequence token."""
    truncated: bool
    n_tokens: int
    finish_reason: FinishReason = "length"
    first_token_at: float | None = None
    """``time.perf_counter()`` when the first token was generated; None for beam search."""
    last_token_at: float | None = None


def output_of(row: Row, progress: Progress) -> GenOutput:
    """A finished row's result."""
    return GenOutput(
        progress.text,
        len(progress.tokens),
        row.encoded.truncated,
        len(row.encoded.ids),
        progress.reason or "length",
        progress.first_token_at,
        progress.last_token_at,
    )


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

    def encode(self, texts: Sequence[str], max_new_tokens: int, templated: Sequence[bool]) -> list[Encoded]:
        """Prompts of a decoder-only model keep their end and pad on the left, next to the continuation.

        ``templated`` texts came from a chat template and carry their special tokens already.
        """
        limit = self.input_limit(max_new_tokens)
        encoded: dict[int, Encoded] = {}
        for special in (True, False):
            at = [i for i, chat in enumerate(templated) if chat != special]
            found = self._encoder.encode([texts[i] for i in at], limit, self._side, special_tokens=special)
            encoded.update(zip(at, found, strict=True))
        return [encoded[i] for i in range(len(texts))]

    def __call__(self, rows: Sequence[Row], key: BatchKey) -> list[GenOutput]:
        """Outputs in row order; rows run in as few ``generate`` calls as the model's positions allow."""
        if key.seed is not None:
            torch.manual_seed(key.seed)
        if key.beams is not None:
            return self._beam_search(rows, key.beams)
        outputs: dict[int, GenOutput] = {}
        for group in self._fitting(range(len(rows)), rows):
            outputs.update(zip(group, self._generate([rows[i] for i in group]), strict=True))
        return [outputs[i] for i in range(len(rows))]

    def _fitting(self, order: range, rows: Sequence[Row]) -> list[list[int]]:
        """Groups, by prompt length, whose longest prompt plus most new tokens fit a causal LM's positions.

        Left padding gives every row the longest prompt's positions, and a finished row keeps stepping
        until the last one finishes.
        """
        if not self._causal:
            return [list(order)]
        groups: list[list[int]] = []
        longest = most = 0
        for i in sorted(order, key=lambda i: len(rows[i].encoded.ids)):
            length, new = max(1, len(rows[i].encoded.ids)), rows[i].params.max_new_tokens
            if groups and max(longest, length) + max(most, new) <= self._loaded.max_length:
                groups[-1].append(i)
                longest, most = max(longest, length), max(most, new)
            else:
                groups.append([i])
                longest, most = length, new
        return groups

    def _pad(self, encoded: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
        stand_in = [self._loaded.token_ids.stand_in]
        input_ids, attention_mask = self._encoder.pad([e.ids or stand_in for e in encoded], self._side)
        device = self._loaded.device
        return input_ids.to(device), attention_mask.to(device)

    def _generate(self, rows: Sequence[Row]) -> list[GenOutput]:
        ids = self._loaded.token_ids
        input_ids, attention_mask = self._pad([row.encoded for row in rows])
        streamer = RowStreamer(rows, self._encoder.decode_one, ids.eos)
        # A seq2seq decoder starts from its start token; a causal LM continues the padded prompt.
        width = input_ids.shape[1] if self._causal else 1
        options: dict[str, Any] = {
            "max_new_tokens": max(row.params.max_new_tokens for row in rows),
            "num_beams": 1,
            "do_sample": any(row.params.do_sample for row in rows),
            "pad_token_id": ids.pad,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([RowStopping(rows, streamer, width)]),
        }
        if options["do_sample"]:
            # Temperature and top-p only, per row, as OpenAI's API defines sampling: no hidden default top-k.
            sampling = RowSampling([row.params for row in rows], input_ids.device)
            options |= {"logits_processor": LogitsProcessorList([sampling]), "top_k": 0, "temperature": 1.0}
        with torch.inference_mode():
            self._loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)  # type: ignore[operator]
        return [output_of(row, progress) for row, progress in zip(rows, streamer.progress, strict=True)]

    def _beam_search(self, rows: Sequence[Row], beams: BeamSearch) -> list[GenOutput]:
        input_ids, attention_mask = self._pad([row.encoded for row in rows])
        options: dict[str, Any] = {
            "max_new_tokens": beams.max_new_tokens,
            "num_beams": beams.num_beams,
            "do_sample": beams.do_sample,
            "pad_token_id": self._loaded.token_ids.pad,
        }
        if beams.do_sample:
            options["temperature"] = beams.temperature
        with torch.inference_mode():
            sequences = self._loaded.model.generate(  # type: ignore[operator]
                input_ids=input_ids, attention_mask=attention_mask, **options
            )
        # A causal LM echoes the prompt; a seq2seq decoder starts with its start token.
        generated = sequences[:, input_ids.shape[1] :] if self._causal else sequences[:, 1:]
        eos = self._loaded.token_ids.eos
        outputs = []
        for row, tokens in zip(rows, generated.cpu().tolist(), strict=True):
            ended = eos is not None and eos in tokens
            kept = tokens[: tokens.index(eos)] if ended else tokens
            reason: FinishReason = "stop" if ended else "length"
            outputs.append(
                GenOutput(
                    self._encoder.decode_one(kept), len(kept), row.encoded.truncated, len(row.encoded.ids), reason
                )
            )
        return outputs
