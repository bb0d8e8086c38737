"""Training data for the contamination check: a training file, or its inputs' fingerprints only.

A training file is read for its inputs alone (text/source/input/prompt field, or one input per line
in a .txt file) and reduced to fingerprints on the fly; nothing of it is stored.
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from service.test_sets.errors import UploadInvalid
from service.test_sets.fingerprint import fingerprint

INPUT_FIELDS = ("text", "source", "input", "prompt")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class TrainingSource:
    field: str
    """``training_file`` or ``training_fingerprints``: the form field, named in errors."""
    filename: str | None
    stream: IO[bytes]


def _lines(stream: IO[bytes], field: str, limit: int) -> Iterator[tuple[int, str]]:
    line = 0
    while raw := stream.readline(limit + 1):
        line += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise UploadInvalid(field, [(line, f"longer than HELDOUT_MAX_RECORD_BYTES ({limit} bytes)")])
        try:
            yield line, raw.decode("utf-8-sig" if line == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise UploadInvalid(field, [(line, "not valid UTF-8")]) from None


def _field(row: dict[str, object], source: TrainingSource, line: int) -> str:
    for name in INPUT_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            return value
    raise UploadInvalid(source.field, [(line, f"no string field named {', '.join(INPUT_FIELDS)}")])


def _texts(source: TrainingSource, limit: int) -> Iterator[str]:
    name = (source.filename or "").lower()
    if name.endswith(".txt"):
        yield from (text for _, text in _lines(source.stream, source.field, limit) if text.strip())
        return
    if name.endswith(".csv"):
        csv.field_size_limit(max(csv.field_size_limit(), limit))
        text = io.TextIOWrapper(source.stream, encoding="utf-8-sig", newline="")
        try:
            for row in csv.DictReader(text):
                yield _field(dict(row), source, 0)
        except (UnicodeDecodeError, csv.Error):
            raise UploadInvalid(source.field, [(None, "not a readable UTF-8 CSV file")]) from None
        finally:
            text.detach()
        return
    for line, raw in _lines(source.stream, source.field, limit):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise UploadInvalid(
                source.field, [(line, "not valid JSON (name the file .txt or .csv for other formats)")]
            ) from None
        if not isinstance(row, dict):
            raise UploadInvalid(source.field, [(line, "each line must be a JSON object")])
        yield _field(row, source, line)


def training_fingerprints(source: TrainingSource, limit: int) -> Iterator[str]:
    """Normalised fingerprints (lower-case hex) of the source's inputs."""
    if source.field == "training_fingerprints":
        for line, text in _lines(source.stream, source.field, limit):
            value = text.strip()
            if not value:
                continue
            if not _HEX64.fullmatch(value):
                raise UploadInvalid(source.field, [(line, "expected a sha256 fingerprint: 64 hexadecimal characters")])
            yield value.lower()
        return
    for text in _texts(source, limit):
        yield fingerprint(text)
