"""Training data: its inputs' fingerprints for the contamination check, and a sample for the generalization gap.

A training file is read for its inputs (text/source/input/prompt field, or one input per line in a .txt
file) and reduced to fingerprints on the fly. Of its labelled records (a label, or a reference or
references for generation) a seeded reservoir sample of at most HELDOUT_TRAINING_SAMPLE is kept, stored
like a blind set's labels; nothing else of it is stored.
"""

import csv
import io
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from service.tasks import Task
from service.test_sets.errors import UploadInvalid
from service.test_sets.fingerprint import fingerprint

INPUT_FIELDS = ("text", "source", "input", "prompt")
SAMPLE_SEED = 0
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


def _label_value(value: Any) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, str) and (not value.strip() or "\x00" in value):
        return None
    return value


def _target(task: Task, row: dict[str, Any]) -> Any:
    """A training record's label (or label list), or its references; None when it has none usable."""
    if task is Task.classification:
        raw = row.get("label")
        if isinstance(raw, str) and raw.lstrip().startswith("["):  # a CSV cell holding a JSON list
            try:
                raw = json.loads(raw)
            except (json.JSONDecodeError, RecursionError):
                return None
        if isinstance(raw, list):
            values = [_label_value(v) for v in raw]
            return sorted(set(values), key=str) if raw and None not in values else None
        return _label_value(raw)
    references = row.get("references", row.get("reference"))
    if isinstance(references, str):
        references = [references]
    ok = isinstance(references, list) and references and all(isinstance(r, str) for r in references)
    return references if ok else None


@dataclass
class TrainingSample:
    """A seeded reservoir sample (Algorithm R) of the labelled training records, at most ``capacity``."""

    task: Task
    capacity: int
    labelled: int = 0
    kept: list[tuple[str, Any]] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(SAMPLE_SEED))

    def offer(self, text: str, row: dict[str, Any]) -> None:
        target = _target(self.task, row)
        if target is None or self.capacity == 0:
            return
        self.labelled += 1
        if len(self.kept) < self.capacity:
            self.kept.append((text, target))
            return
        slot = self._rng.randrange(self.labelled)
        if slot < self.capacity:
            self.kept[slot] = (text, target)


def _texts(source: TrainingSource, limit: int, sample: TrainingSample | None) -> Iterator[str]:
    for text, row in _records(source, limit):
        if sample is not None and row is not None:
            sample.offer(text, row)
        yield text


def _records(source: TrainingSource, limit: int) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Each record's input, with its row (None for a .txt line)."""
    name = (source.filename or "").lower()
    if name.endswith(".txt"):
        yield from ((text, None) for _, text in _lines(source.stream, source.field, limit) if text.strip())
        return
    if name.endswith(".csv"):
        csv.field_size_limit(max(csv.field_size_limit(), limit))
        text = io.TextIOWrapper(source.stream, encoding="utf-8-sig", newline="")
        try:
            for row in csv.DictReader(text):
                values = dict(row)
                yield _field(values, source, 0), values
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
        yield _field(row, source, line), row


def training_fingerprints(source: TrainingSource, limit: int, sample: TrainingSample | None = None) -> Iterator[str]:
    """Normalised fingerprints (lower-case hex) of the source's inputs; a training file's labelled records are
    offered to ``sample`` on the way."""
    if source.field == "training_fingerprints":
        for line, text in _lines(source.stream, source.field, limit):
            value = text.strip()
            if not value:
                continue
            if not _HEX64.fullmatch(value):
                raise UploadInvalid(source.field, [(line, "expected a sha256 fingerprint: 64 hexadecimal characters")])
            yield value.lower()
        return
    for text in _texts(source, limit, sample):
        yield fingerprint(text)
