"""The README's code blocks as the docs test runs them: fenced blocks, their commands and documented answers.

Conventions (README "Development" describes them for authors):
- A shell block is fenced as ```bash (or sh, shell, console). The docs test runs every command of every
  shell block in order against a live demo-like server, unless the line right before the fence is
  ``<!-- docs-test: skip REASON -->``.
- Comment lines right after a command (``# {...}``) document its answer. When they hold JSON, the answer
  must have that shape: the same keys and JSON types at every level. ``...`` trims: ``{...}`` is any
  object, ``[...]`` any list, ``...`` among keys or items allows more of them. Values are not compared, so
  a trimmed real answer from the demo documents the shape of any server's answer.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

SHELL = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\b(.*?)-->\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S")
MORE = "..."


@dataclass(frozen=True)
class Block:
    info: str
    text: str
    line: int
    skip: str | None  # the marker's reason; None when the block runs


@dataclass(frozen=True)
class Command:
    text: str
    documented: str
    line: int

    @property
    def is_assignment(self) -> bool:
        return bool(ASSIGNMENT.match(self.text)) and " && " not in self.text and "\n" not in self.text

    @property
    def is_read(self) -> bool:
        """A curl that sends nothing: safe to repeat while an asynchronous job finishes."""
        sends = re.search(r"(^|\s)(-d|--data\S*|--json|-F|--form|-X|--request)(\s|=|$)", self.text)
        return "curl " in self.text and sends is None


def blocks(markdown: str) -> list[Block]:
    found: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = SKIP.match(lines[i - 1]) if i > 0 else None
        skip = marker.group(1).strip() if marker else None
        found.append(Block(opening.group(1), "\n".join(lines[i + 1 : end]), i + 1, skip))
        i = end + 1
    return found


def commands(block: Block) -> list[Command]:
    """Each command (backslash continuations joined) with the comment lines that follow it."""
    found: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        while lines[i].rstrip().endswith("\\"):
            i += 1
        text = "\n".join(lines[start : i + 1])
        i += 1
        documented: list[str] = []
        while i < len(lines) and lines[i].startswith("#"):
            documented.append(lines[i][1:])
            i += 1
        found.append(Command(text, "\n".join(documented).strip(), block.line + start + 1))
    return found


def documented_shape(documented: str) -> Any | None:
    """The documented answer as JSON with ``...`` markers, or None when it is not JSON (plain output).

    A bare ``...`` (outside strings) becomes the key ``"...": null`` in an object and the item ``"..."`` in
    a list, wherever it stands."""
    if not documented.startswith(("{", "[")):
        return None
    out: list[str] = []
    containers: list[str] = []
    i = 0
    while i < len(documented):
        char = documented[i]
        if char == '"':
            end = i + 1
            while documented[end] != '"':
                end += 2 if documented[end] == "\\" else 1
            out.append(documented[i : end + 1])
            i = end + 1
            continue
        if documented.startswith(MORE, i):
            out.append('"...": null' if containers[-1] == "{" else '"..."')
            i += len(MORE)
            continue
        if char in "{[":
            containers.append(char)
        elif char in "}]":
            containers.pop()
        out.append(char)
        i += 1
    return json.loads("".join(out))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def mismatches(shape: Any, actual: Any, path: str = "$") -> list[str]:
    """Where ``actual`` departs from the documented ``shape``; empty when it fits."""
    if _kind(shape) != _kind(actual):
        return [f"{path}: documented {_kind(shape)}, answered {_kind(actual)}"]
    if isinstance(shape, dict):
        keys = [key for key in shape if key != MORE]
        problems = [f"{path}.{key}: documented, not answered" for key in keys if key not in actual]
        if MORE not in shape:
            problems += [
                f"{path}.{key}: answered, not documented (add it or trim with ...)"
                for key in actual
                if key not in shape
            ]
        for key in keys:
            if key in actual:
                problems += mismatches(shape[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(shape, list):
        items = [item for item in shape if item != MORE]
        if len(actual) < len(items) or (MORE not in shape and len(actual) != len(items)):
            return [
                f"{path}: documented {len(items)} item(s){' or more' if MORE in shape else ''}, answered {len(actual)}"
            ]
        return [problem for i, item in enumerate(items) for problem in mismatches(item, actual[i], f"{path}[{i}]")]
    return []
