"""Checks a ``save_pretrained`` directory (a model, or a PEFT adapter and its base) before anything heavy
touches it, and fingerprints its weights.

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
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_TASK_TYPES = ("SEQ_CLS", "CAUSAL_LM", "SEQ_2_SEQ_LM")
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spiece.model",))
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


class ModelLoadError(Exception):
    """The model directory cannot be served; the message names the path and what is wrong."""


@dataclass(frozen=True)
class ModelFiles:
    path: Path
    config: dict[str, Any]
    weight_files: tuple[Path, ...]


@dataclass(frozen=True)
class AdapterFiles:
    """A PEFT adapter directory and the checked base model it applies to."""

    path: Path
    config: dict[str, Any]
    """adapter_config.json."""
    weight_files: tuple[Path, ...]
    base: ModelFiles
    has_tokenizer: bool
    """The adapter directory carries its own tokenizer (it may have added tokens); else the base's serves."""


@dataclass(frozen=True)
class ModelRef:
    """One named set of weights and its version, as ``/v1/models`` reports a base model and its adapter."""

    name: str
    version: str


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


def _has_tokenizer(root: Path) -> bool:
    if (root / "tokenizer.json").is_file():
        _read_json(root / "tokenizer.json", "tokenizer.json")
        return True
    return any(all((root / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS)


def _check_tokenizer(root: Path) -> None:
    if not _has_tokenizer(root):
        options = ", ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
        raise ModelLoadError(f"{root}: no tokenizer files (expected one of: {options})")


def _checked_dir(path: Path) -> Path:
    root = path.expanduser()
    if not root.exists():
        raise ModelLoadError(f"{root}: model directory does not exist")
    if not root.is_dir():
        raise ModelLoadError(f"{root}: not a directory")
    return root


def _safetensors_names(path: Path) -> set[str]:
    """Tensor names from a safetensors header (already checked by ``_check_safetensors``)."""
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        return {key for key in json.loads(handle.read(header_len)) if key != "__metadata__"}


def unmatched_targets_message(adapter: Path, base: Path, targets: str | list[str], base_modules: set[str]) -> str:
    """The one wording for an adapter whose target modules name nothing in its base, with names that exist."""
    leaves = sorted({name.rsplit(".", 1)[-1] for name in base_modules if name})
    shown = ", ".join(leaves[:20]) + (" …" if len(leaves) > 20 else "")
    return (
        f"{adapter}: the adapter's target_modules {targets} match no module of the base model {base} "
        f"(the adapter was trained on another architecture?); the base has modules named: {shown}"
    )


def _check_targets(adapter: Path, config: dict[str, Any], base: ModelFiles) -> None:
    """Refuse, without torch, an adapter none of whose listed target modules the base's weights name.

    Matches as peft does for a list (a module name equal to or ending in ``.target``); a regex or
    ``all-linear`` target, or pickled base weights, are left to the loader, which checks on the model.
    """
    targets = config.get("target_modules")
    if not isinstance(targets, list) or any(weights.suffix != ".safetensors" for weights in base.weight_files):
        return
    modules = {name.rsplit(".", 1)[0] for weights in base.weight_files for name in _safetensors_names(weights)}
    if not any(name == target or name.endswith(f".{target}") for name in modules for target in targets):
        raise ModelLoadError(unmatched_targets_message(adapter, base.path, targets, modules))


def _base_model_dir(adapter: Path, config: dict[str, Any], base_model_path: Path | None) -> Path:
    """HELDOUT_BASE_MODEL_PATH when set, else the adapter's base_model_name_or_path if it is a local directory."""
    if base_model_path is not None:
        return base_model_path
    recorded = config.get("base_model_name_or_path")
    if isinstance(recorded, str) and recorded and Path(recorded).expanduser().is_dir():
        return Path(recorded).expanduser()
    raise ModelLoadError(
        f"{adapter}: a PEFT adapter whose base model ({recorded!r}, from adapter_config.json "
        "base_model_name_or_path) is not a local directory; set HELDOUT_BASE_MODEL_PATH to the base model's "
        "save_pretrained directory"
    )


def _inspect_adapter(root: Path, base_model_path: Path | None) -> AdapterFiles:
    config = _read_json(root / ADAPTER_CONFIG, ADAPTER_CONFIG)
    if not isinstance(config, dict):
        raise ModelLoadError(f"{root}/{ADAPTER_CONFIG}: not a JSON object")
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise ModelLoadError(f"{root}/{ADAPTER_CONFIG}: peft_type {peft_type!r} is not servable; heldout serves LoRA")
    task_type = config.get("task_type")
    if task_type is not None and task_type not in ADAPTER_TASK_TYPES:
        raise ModelLoadError(
            f"{root}/{ADAPTER_CONFIG}: task_type {task_type!r} is not servable; heldout serves "
            f"{', '.join(ADAPTER_TASK_TYPES)} adapters"
        )
    weights = next(((root / name,) for name in ADAPTER_WEIGHTS if (root / name).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"{root}: no adapter weights (expected {' or '.join(ADAPTER_WEIGHTS)})")
    _check_weights(weights[0])
    base_dir = _base_model_dir(root, config, base_model_path)
    if (base_dir.expanduser() / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"{base_dir}: the base model of adapter {root} is itself an adapter; merge it first")
    try:
        base = _inspect_full_model(_checked_dir(base_dir))
    except ModelLoadError as exc:
        raise ModelLoadError(f"base model of adapter {root}: {exc}") from None
    _check_targets(root, config, base)
    return AdapterFiles(root.resolve(), config, weights, base, _has_tokenizer(root))


def _inspect_full_model(root: Path) -> ModelFiles:
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


def inspect_model_dir(path: Path, base_model_path: Path | None = None) -> ModelFiles | AdapterFiles:
    """Raise ModelLoadError unless ``path`` holds a config, intact weights and a tokenizer, or a LoRA
    adapter (``adapter_config.json``) whose base, ``base_model_path`` or the one it records, does."""
    root = _checked_dir(path)
    if (root / ADAPTER_CONFIG).is_file():
        return _inspect_adapter(root, base_model_path)
    return _inspect_full_model(root)


def weights_sha256(files: ModelFiles | AdapterFiles) -> str:
    """One sha256 over every weight file's name and bytes, in name order: a model's version."""
    digest = hashlib.sha256()
    for weight_file in files.weight_files:
        digest.update(weight_file.name.encode() + b"\0")
        with weight_file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def adapter_sha256(files: AdapterFiles) -> str:
    """The adapter's version: its weights and its config (rank, alpha and targets change outputs too), less
    the base's recorded location, which says where the base was, not what it is."""
    config = {key: value for key, value in files.config.items() if key != "base_model_name_or_path"}
    return hashlib.sha256(f"{json.dumps(config, sort_keys=True)}\0{weights_sha256(files)}".encode()).hexdigest()


def combined_sha256(base_version: str, adapter_version: str) -> str:
    """The served version of a base with an adapter: changes when either does."""
    return hashlib.sha256(f"{base_version}+{adapter_version}".encode()).hexdigest()
