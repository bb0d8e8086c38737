"""Tokenization that reports truncation, and padding of each batch only to its own longest row."""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tokenizers import Tokenizer

# No tokenizer needs more than this many characters per token, so longer inputs are cut before tokenizing:
# a 60 MB body cannot stall the worker, and whatever is cut was truncated anyway.
MAX_CHARS_PER_TOKEN = 64

Side = Literal["left", "right"]


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    truncated: bool


class TextEncoder:
    """Thread-safe: each thread tokenizes with its own copy, as truncation is set per call on the tokenizer."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int) -> None:
        self._spec = tokenizer.to_str()
        self._local = threading.local()
        self._pad_id = pad_id

    def _tokenizer(self) -> Tokenizer:
        tokenizer: Tokenizer | None = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = Tokenizer.from_str(self._spec)
            tokenizer.no_padding()
            self._local.tokenizer = tokenizer
        return tokenizer

    def encode(
        self, texts: Sequence[str], max_length: int, side: Side = "right", *, special_tokens: bool = True
    ) -> list[Encoded]:
        """Token ids, at most ``max_length`` long; ``side`` is the side cut off.

        ``special_tokens=False`` is for text a chat template rendered: it already holds them, as in
        ``apply_chat_template(tokenize=True)``.
        """
        tokenizer = self._tokenizer()
        tokenizer.enable_truncation(max_length, direction=side)
        char_limit = max_length * MAX_CHARS_PER_TOKEN
        clipped = [text if len(text) <= char_limit else self._clip(text, char_limit, side) for text in texts]
        encodings = tokenizer.encode_batch(clipped, add_special_tokens=special_tokens)
        return [
            Encoded(encoding.ids, bool(encoding.overflowing) or len(text) > char_limit)
            for encoding, text in zip(encodings, texts, strict=True)
        ]

    @staticmethod
    def _clip(text: str, limit: int, side: Side) -> str:
        return text[-limit:] if side == "left" else text[:limit]

    def pad(self, rows: Sequence[list[int]], side: Side = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` padded to the longest row of this batch only."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if not row:
                continue
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, span] = torch.tensor(row, dtype=torch.long)
            mask[i, span] = 1
        return ids, mask

    def decode(self, rows: Sequence[list[int]]) -> list[str]:
        return list(self._tokenizer().decode_batch([list(row) for row in rows], skip_special_tokens=True))

    def decode_one(self, row: list[int]) -> str:
        return str(self._tokenizer().decode(row, skip_special_tokens=True))
