"""Checks a ``save_pretrained`` directory before anything heavy touches it, and fingerprints its weights.

Kept free of torch and transformers so ``heldout serve`` can reject a bad directory in a second, with a
message naming the path and the missing piece, instead of a loader traceback from every worker.
"""

import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spiece.model",))
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


class ModelLoadError(Exception):
    """The model directory cannot be served; the message names the path and what is wrong."""


@dataclass(frozen=True)
class ModelFiles:
    path: Path
    config: dict[str, Any]
    weight_files: tuple[Path, ...]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: {what} is not readable JSON ({exc})") from None


def _weight_files(root: Path) -> tuple[Path, ...]:
    for index_name in WEIGHT_INDEXES:
        index = root / index_name
        if index.is_file():
            weight_map = _read_json(index, "the weight index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ModelLoadError(f"{index}: the weight index has no weight_map")
            shards = sorted({root / str(name) for name in weight_map.values()})
            missing = [shard.name for shard in shards if not shard.is_file()]
            if missing:
                raise ModelLoadError(f"{root}: weight shards listed in {index_name} are missing: {', '.join(missing)}")
            return tuple(shards)
    for name in SINGLE_WEIGHTS:
        if (root / name).is_file():
            return (root / name,)
    raise ModelLoadError(f"{root}: no weight files (expected {' or '.join(SINGLE_WEIGHTS + WEIGHT_INDEXES)})")


def _check_safetensors(path: Path) -> None:
    """The header declares every tensor's byte range, so a truncated or overwritten file shows here."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelLoadError(f"{path}: corrupt safetensors file (shorter than its header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise ModelLoadError(f"{path}: corrupt safetensors file (header length {header_len} exceeds the file)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelLoadError(f"{path}: corrupt safetensors file (header is not JSON)") from None
    try:
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise ModelLoadError(f"{path}: corrupt safetensors file (malformed header)") from None
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        raise ModelLoadError(f"{path}: corrupt or truncated safetensors file ({size} bytes, header implies {expected})")


def _check_weights(path: Path) -> None:
    if path.suffix == ".safetensors":
        _check_safetensors(path)
    elif not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path}: corrupt PyTorch weight file (not a torch.save archive)")


def _check_tokenizer(root: Path) -> None:
    if (root / "tokenizer.json").is_file():
        _read_json(root / "tokenizer.json", "tokenizer.json")
        return
    if not any(all((root / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
        options = ", ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
        raise ModelLoadError(f"{root}: no tokenizer files (expected one of: {options})")


def inspect_model_dir(path: Path) -> ModelFiles:
    """Raise ModelLoadError unless ``path`` holds a config, intact weights and a tokenizer."""
    root = path.expanduser()
    if not root.exists():
        raise ModelLoadError(f"{root}: model directory does not exist")
    if not root.is_dir():
        raise ModelLoadError(f"{root}: not a directory")
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"{root}: config.json is missing")
    config = _read_json(root / "config.json", "config.json")
    if not isinstance(config, dict) or not config.get("architectures"):
        raise ModelLoadError(f"{root}/config.json: names no architectures, so the task cannot be known")
    weights = _weight_files(root)
    for weight_file in weights:
        _check_weights(weight_file)
    _check_tokenizer(root)
    return ModelFiles(root.resolve(), config, weights)


def weights_sha256(files: ModelFiles) -> str:
    """The model version: one sha256 over every weight file's name and bytes, in name order."""
    digest = hashlib.sha256()
    for weight_file in files.weight_files:
        digest.update(weight_file.name.encode() + b"\0")
        with weight_file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
