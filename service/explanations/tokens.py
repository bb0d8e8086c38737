"""Inputs as the model sees them: tokens with character offsets, grouped into whitespace-separated words.

Words are the features of LIME, kernel SHAP, occlusion and faithfulness; a word is removed by replacing
its tokens with the pad token (or, for faithfulness, deleting them).
"""

import bisect
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Encoding, Tokenizer

WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TokenizedText:
    text: str
    ids: list[int]
    """Every token id, special tokens included."""
    special: list[bool]
    offsets: list[tuple[int, int]]
    words: list[tuple[int, int]]
    """Character spans of the whitespace-separated words."""
    word_of: list[int]
    """Each token's word index; -1 for special tokens."""
    truncated: bool

    @property
    def content(self) -> list[int]:
        """Positions of the non-special tokens: the ones attributed."""
        return [i for i, special in enumerate(self.special) if not special]

    def word_tokens(self) -> list[list[int]]:
        """For each word, the positions of its tokens (none for a word the tokenizer dropped or truncated)."""
        tokens: list[list[int]] = [[] for _ in self.words]
        for position, word in enumerate(self.word_of):
            if word >= 0:
                tokens[word].append(position)
        return tokens

    def features(self) -> list[int]:
        """Indices of the words that have tokens: the features a word-level method perturbs."""
        return [w for w, positions in enumerate(self.word_tokens()) if positions]


class TextTokenizer:
    """The served model's tokenizer with offsets; thread-safe (truncation is set per call)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str], *, special_tokens: bool = True) -> list[TokenizedText]:
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=special_tokens)
        return [self._tokenized(text, encoding) for text, encoding in zip(texts, encodings, strict=True)]

    def decode(self, ids: list[int]) -> str:
        with self._lock:
            return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    @staticmethod
    def _tokenized(text: str, encoding: Encoding) -> TokenizedText:
        ids = list(encoding.ids)
        special = [bool(flag) for flag in encoding.special_tokens_mask]
        offsets = [(int(start), int(end)) for start, end in encoding.offsets]
        words = [match.span() for match in WORD.finditer(text)]
        starts = [start for start, _ in words]
        word_of = [
            -1 if is_special else max(0, bisect.bisect_right(starts, _first_visible(text, span)) - 1)
            for is_special, span in zip(special, offsets, strict=True)
        ]
        if not words:
            word_of = [-1] * len(ids)
            special = [True] * len(ids)
        truncated = bool(encoding.overflowing)
        return TokenizedText(text, ids, special, offsets, words, word_of, truncated)


def _first_visible(text: str, span: tuple[int, int]) -> int:
    """The token's first non-space character: a byte-level BPE token carries the space before its word."""
    start, end = span
    for position in range(start, end):
        if not text[position].isspace():
            return position
    return start
