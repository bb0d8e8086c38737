"""rouge-score's tokenizers over many texts at once: token ids, each token's document and newline sentence.

rouge-score's default tokenizer lowercases, turns every run of characters outside ``[a-z0-9]`` into a
space, splits, optionally Porter-stems words longer than 3 characters (nltk's stemmer, as rouge-score
uses it) and drops tokens that are not ``[a-z0-9]+`` after stemming. So it keeps ASCII letters and
digits only: other scripts vanish, which is why ``whitespace`` (``str.split``, optionally lowercased)
is offered. rougeLsum splits each text on newlines first; a token never spans a newline under either
tokenizer, so one pass over the whole text gives every sentence's tokens, marked by sentence.

All texts of a chunk go through one lowercasing and one split, joined by a document marker and with
newlines turned into a sentence marker: characters no text contains (the default tokenizer drops every
such character anyway, so there they are simply blanked first). For the default tokenizer, encoding
to ASCII with ``?`` for the rest and one byte translation blank what its regex would, at a fifth of
the regex's cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import numpy as np

TOKENIZERS = ("default", "whitespace")
_VALID = re.compile(r"^[a-z0-9]+$")
# Control characters that are not whitespace to str.split and that no rouge-score rule keeps.
_MARKERS = [chr(c) for c in (*range(0x01, 0x09), *range(0x0E, 0x1C))]
_DOC, _LINE = _MARKERS[0], _MARKERS[1]
# Bytes the default tokenizer keeps (ASCII letters after lowercasing, digits, the two markers); the rest become spaces.
_KEEP = bytes(c if chr(c).isdigit() or "a" <= chr(c) <= "z" or chr(c) in (_DOC, _LINE) else 32 for c in range(256))
STEM_CACHE = 2**18


@dataclass(frozen=True)
class Tokenized:
    """Every kept token of every text, in order, as integer ids."""

    ids: np.ndarray
    doc: np.ndarray
    """Each token's text."""
    sentence: np.ndarray
    """Each token's sentence: numbered over all texts, increasing; a new number after every newline."""
    n_docs: int

    @property
    def doc_lengths(self) -> np.ndarray:
        return np.bincount(self.doc, minlength=self.n_docs)

    @property
    def doc_starts(self) -> np.ndarray:
        lengths = self.doc_lengths
        return np.cumsum(lengths) - lengths


@lru_cache(maxsize=1)
def _porter() -> Callable[[str], str]:
    from nltk.stem import porter  # imported on first use: nltk takes a while to import

    return porter.PorterStemmer().stem


@lru_cache(maxsize=STEM_CACHE)
def _stemmed(word: bytes) -> str:
    """rouge-score's rule: only words longer than 3 characters are stemmed; memoised across chunks."""
    text = word.decode("ascii")
    return _porter()(text) if len(text) > 3 else text


def _markers(text: str) -> tuple[str, str] | None:
    free = [m for m in _MARKERS if m not in text]
    return (free[0], free[1]) if len(free) >= 2 else None


def _token_stream(texts: Sequence[str], tokenize: str, lowercase: bool) -> tuple[list[Hashable], Hashable, Hashable]:
    """All tokens with document and sentence markers between them, and the two markers."""
    if tokenize == "default":
        if any(_DOC in text or _LINE in text for text in texts):
            texts = [text.replace(_DOC, " ").replace(_LINE, " ") for text in texts]
        joined = f" {_DOC} ".join(texts).lower().replace("\n", f" {_LINE} ")
        stream: list[Hashable] = list(joined.encode("ascii", "replace").translate(_KEEP).split())
        return stream, _DOC.encode(), _LINE.encode()
    found = _markers("".join(texts))
    if found is None:  # every marker occurs in the texts: one text at a time, with markers split() never makes
        stream = []
        for i, text in enumerate(texts):
            if i:
                stream.append(" ")
            for k, line in enumerate((text.lower() if lowercase else text).split("\n")):
                if k:
                    stream.append("\n")
                stream.extend(line.split())
        return stream, " ", "\n"
    doc_mark, line_mark = found
    joined = f" {doc_mark} ".join(texts)
    if lowercase:
        joined = joined.lower()
    return list(joined.replace("\n", f" {line_mark} ").split()), doc_mark, line_mark


def tokenize_texts(texts: Sequence[str], *, tokenize: str, use_stemmer: bool, lowercase: bool) -> Tokenized:
    """Token ids of ``texts`` as rouge-score's tokenizer (``default``) or ``str.split`` (``whitespace``) makes them.

    Equal ids mean equal tokens (after stemming). ``lowercase`` applies to ``whitespace``; the default
    tokenizer always lowercases. ``use_stemmer`` applies to the default tokenizer, as in rouge-score.
    """
    stream, doc_mark, line_mark = _token_stream(texts, tokenize, lowercase)
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(stream))}
    raw = np.fromiter(map(vocabulary.__getitem__, stream), dtype=np.int64, count=len(stream))
    words = list(vocabulary)
    doc_id = vocabulary.get(doc_mark, -1)
    line_id = vocabulary.get(line_mark, -1)
    is_doc, is_line = raw == doc_id, raw == line_id
    doc = np.cumsum(is_doc)
    sentence = np.cumsum(is_doc | is_line)
    if use_stemmer and tokenize == "default":
        stems = [_stemmed(cast(bytes, word)) for word in words]
        valid = np.fromiter((bool(_VALID.match(stem)) for stem in stems), dtype=bool, count=len(stems))
        stem_ids = {stem: i for i, stem in enumerate(dict.fromkeys(stems))}
        mapping = np.fromiter(map(stem_ids.__getitem__, stems), dtype=np.int64, count=len(stems))
        keep = ~is_doc & ~is_line & valid[raw]
        ids = mapping[raw[keep]]
    else:
        keep = ~is_doc & ~is_line
        ids = raw[keep]
    return Tokenized(ids, doc[keep], sentence[keep], len(texts))
