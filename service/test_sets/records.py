"""Upload parsing: a JSONL or CSV byte stream → validated records, one at a time, in bounded memory.

Every record becomes a canonical JSON line (sorted keys, compact, UTF-8, ids as strings, label sets
sorted), so the same content hashes the same whatever its format, key order or whitespace. Error
messages name the line and the field, never the value: a bad line may hold a reference.
"""

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

from metrics.classification import MAX_LABELS
from service.tasks import Task
from service.test_sets.errors import UploadInvalid

# Upload errors collected before the upload is abandoned.
MAX_ERRORS = 20
MAX_ID_CHARS = 256
# Extra fields are ignored (and listed in the audit), up to this many names.
MAX_IGNORED_FIELDS = 50


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


FIELDS = {
    Task.classification: ("id", "text", "label", "group"),
    Task.generation: ("id", "source", "references", "reference", "group"),
}
# A group names a slice; like a label it is hidden, and bounded like one.
MAX_GROUP_CHARS = 200


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    id: str
    input: str
    target: Any
    """Classification: the label, or the sorted label list (multilabel). Generation: the references."""
    canonical: bytes
    group: str | None = None


class _Invalid(Exception):
    pass


def detect_format(filename: str | None, head: bytes) -> Format:
    """The extension decides; otherwise a first non-blank ``{`` means JSONL."""
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return Format.csv
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return Format.jsonl
    stripped = head.lstrip(codecs.BOM_UTF8).lstrip()
    return Format.jsonl if stripped.startswith(b"{") else Format.csv


def _check_string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' must be a string")
    if "\x00" in value:
        raise _Invalid(f"'{name}' contains a NUL character")
    return value


def _check_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid("'id' must be a string or an integer")
    text = _check_string(str(value), "id")
    if not text.strip():
        raise _Invalid("'id' is empty")
    if len(text) > MAX_ID_CHARS:
        raise _Invalid(f"'id' is longer than {MAX_ID_CHARS} characters")
    return text


def _check_group(row: dict[str, Any]) -> str | None:
    """The record's slice: a non-empty string, or None where the record names none (an empty CSV cell)."""
    value = row.get("group")
    if value is None or value == "":
        return None
    text = _check_string(value, "group")
    if not text.strip():
        raise _Invalid("'group' is blank")
    if len(text) > MAX_GROUP_CHARS:
        raise _Invalid(f"'group' is longer than {MAX_GROUP_CHARS} characters")
    return text


def _with_group(canonical: dict[str, Any], group: str | None) -> dict[str, Any]:
    """A grouped record hashes with its group; an ungrouped one as it always did."""
    return canonical if group is None else canonical | {"group": group}


def _check_label(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid("'label' must be a string, an integer or a list of them")
    if isinstance(value, str):
        _check_string(value, "label")
        if not value.strip():
            raise _Invalid("'label' is empty")
    elif not -(2**63) <= value < 2**63:
        raise _Invalid("'label' integers must fit in 64 bits")
    return value


@dataclass
class RecordReader:
    """Validates records of one task; remembers what must agree across records (label kind, multilabel)."""

    task: Task
    max_record_bytes: int
    errors: list[tuple[int | None, str]] = field(default_factory=list)
    ignored_fields: set[str] = field(default_factory=set)
    multilabel: bool | None = None
    label_kind: type | None = None
    labels: set[int | str] = field(default_factory=set)
    records: int = 0

    def read(self, stream: IO[bytes], fmt: Format) -> Iterator[Record]:
        rows = self._jsonl_rows(stream) if fmt is Format.jsonl else self._csv_rows(stream)
        for line, row in rows:
            try:
                record = self._record(line, _csv_values(row) if fmt is Format.csv else row)
            except _Invalid as exc:
                self._fail(line, str(exc))
                continue
            self.records += 1
            yield record
        if self.errors:
            raise UploadInvalid("file", self.errors)
        if self.records == 0:
            raise UploadInvalid("file", [(None, "the file holds no records")])

    def _fail(self, line: int | None, message: str) -> None:
        self.errors.append((line, message))
        if len(self.errors) >= MAX_ERRORS:
            raise UploadInvalid("file", self.errors)

    # -- formats -------------------------------------------------------------------------------

    def _jsonl_rows(self, stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
        limit = self.max_record_bytes
        line = 0
        while raw := stream.readline(limit + 1):
            line += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                    pass
                self._fail(line, f"longer than HELDOUT_MAX_RECORD_BYTES ({limit} bytes)")
                continue
            if line == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(line, "not valid UTF-8")
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                self._fail(line, f"not valid JSON ({reason})")
                continue
            if not isinstance(row, dict):
                self._fail(line, "each line must be a JSON object")
                continue
            yield line, row

    def _csv_rows(self, stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
        csv.field_size_limit(max(csv.field_size_limit(), self.max_record_bytes))
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        line = 1
        try:
            header = next(reader, None)
            if header is None:
                return
            names = [name.strip() for name in header]
            if len(set(names)) != len(names):
                self._fail(1, "the header repeats a column name")
                return
            for cells in reader:
                start, line = line + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(names):
                    self._fail(start, f"{len(cells)} cells, but the header has {len(names)} columns")
                    continue
                yield start, dict(zip(names, cells, strict=True))
        except UnicodeDecodeError:
            self._fail(line + 1, "not valid UTF-8")
        except csv.Error as exc:
            self._fail(line + 1, f"not valid CSV ({str(exc).split(':')[0]})")
        finally:
            text.detach()

    # -- records -------------------------------------------------------------------------------

    def _record(self, line: int, row: dict[str, Any]) -> Record:
        known = FIELDS[self.task]
        for name in row:
            if name not in known and len(self.ignored_fields) < MAX_IGNORED_FIELDS:
                self.ignored_fields.add(str(name)[:100])
        if "id" not in row:
            raise _Invalid("'id' is missing")
        record_id = _check_id(row["id"])
        if self.task is Task.classification:
            return self._classification(line, record_id, row)
        return self._generation(line, record_id, row)

    def _classification(self, line: int, record_id: str, row: dict[str, Any]) -> Record:
        if "text" not in row:
            raise _Invalid("'text' is missing")
        text = _check_string(row["text"], "text")
        if row.get("label") is None:
            raise _Invalid("'label' is missing")
        raw = row["label"]
        multilabel = isinstance(raw, list)
        if self.multilabel is not None and multilabel != self.multilabel:
            first = "label lists (multilabel)" if self.multilabel else "single labels"
            raise _Invalid(f"'label' must be like the earlier records: {first}")
        labels = [_check_label(v) for v in raw] if multilabel else [_check_label(raw)]
        kinds = {type(v) for v in labels}
        if self.label_kind is not None:
            kinds.add(self.label_kind)
        if len(kinds) > 1:
            raise _Invalid("'label' mixes strings and integers (across records or within one)")
        new = set(labels) - self.labels
        if len(self.labels) + len(new) > MAX_LABELS:
            raise _Invalid(f"more than {MAX_LABELS} distinct labels")
        self.labels |= new
        self.multilabel = multilabel
        self.label_kind = next(iter(kinds), self.label_kind)
        target: Any = sorted(set(labels)) if multilabel else labels[0]
        group = _check_group(row)
        canonical = _with_group({"id": record_id, "label": target, "text": text}, group)
        return Record(line, record_id, text, target, _canonical(canonical), group)

    def _generation(self, line: int, record_id: str, row: dict[str, Any]) -> Record:
        if "source" not in row:
            raise _Invalid("'source' is missing")
        source = _check_string(row["source"], "source")
        has_one, has_many = row.get("reference") is not None, row.get("references") is not None
        if has_one == has_many:
            raise _Invalid("give exactly one of 'reference' (a string) and 'references' (a list of strings)")
        if has_one:
            references = [_check_string(row["reference"], "reference")]
        else:
            raw = row["references"]
            if not isinstance(raw, list) or not raw:
                raise _Invalid("'references' must be a non-empty list of strings")
            references = [_check_string(v, "references") for v in raw]
        group = _check_group(row)
        canonical = _with_group({"id": record_id, "references": references, "source": source}, group)
        return Record(line, record_id, source, references, _canonical(canonical), group)


def _csv_values(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings; a label or references cell written as a JSON list is a list."""
    for key in ("label", "references"):
        value = row.get(key)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                row[key] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise _Invalid(f"'{key}' starts with '[' but is not a JSON list") from None
    for key, other in (("reference", "references"), ("references", "reference")):
        if row.get(key) == "" and other in row:
            del row[key]
    return row


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _canonical(value: dict[str, Any]) -> bytes:
    try:
        return canonical_json(value) + b"\n"
    except UnicodeEncodeError:
        raise _Invalid("a string holds an unpaired UTF-16 surrogate") from None
