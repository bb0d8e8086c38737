"""Loads a checked model directory (or a LoRA adapter on its base) onto a device: the task from its
architecture, its labels and limits."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto import modeling_auto

from service.inference.adapters import apply_adapter, check_adapter_task
from service.inference.device import dtype_name
from service.inference.model_dir import (
    AdapterFiles,
    ModelFiles,
    ModelLoadError,
    ModelRef,
    adapter_sha256,
    combined_sha256,
    weights_sha256,
)
from service.tasks import ModelTask

# Models with relative positions (T5) state no limit of their own; this is where they degrade in practice.
FALLBACK_MAX_LENGTH = 512
POSITION_ATTRIBUTES = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len")

AUTO_CLASSES: dict[ModelTask, Any] = {
    ModelTask.classification: AutoModelForSequenceClassification,
    ModelTask.multi_label: AutoModelForSequenceClassification,
    ModelTask.causal_lm: AutoModelForCausalLM,
    ModelTask.seq2seq_lm: AutoModelForSeq2SeqLM,
}


@dataclass(frozen=True)
class TokenIds:
    pad: int
    eos: int | None
    bos: int | None

    @property
    def stand_in(self) -> int:
        """What an input that tokenizes to nothing is given, so its row has a position to attend to."""
        return next(tok for tok in (self.bos, self.eos, self.pad) if tok is not None)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    task: ModelTask
    device: torch.device
    dtype: torch.dtype
    model: PreTrainedModel
    tokenizer: Tokenizer
    """A private copy of the fast tokenizer: its truncation state is set per batch by the one worker thread."""
    token_ids: TokenIds
    labels: list[str]
    max_length: int
    base_model: ModelRef | None = None
    """For an adapter: the base model it was put on."""
    adapter: ModelRef | None = None

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)


def _architecture_names(mapping: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for value in mapping.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def detect_task(config: PretrainedConfig) -> ModelTask:
    architecture = (config.architectures or [""])[0]
    if architecture in _architecture_names(modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES):
        multi = config.problem_type == "multi_label_classification"
        return ModelTask.multi_label if multi else ModelTask.classification
    if architecture in _architecture_names(modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES):
        return ModelTask.seq2seq_lm
    if architecture in _architecture_names(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return ModelTask.causal_lm
    raise ModelLoadError(
        f"architecture {architecture!r} is not servable: heldout serves sequence classifiers, causal LMs "
        "and seq2seq LMs"
    )


def max_length(config: PretrainedConfig, tokenizer_limit: int | None) -> int:
    """The tighter of the tokenizer's and the position embeddings' limits."""
    limits = [int(v) for v in (getattr(config, name, None) for name in POSITION_ATTRIBUTES) if isinstance(v, int)]
    if tokenizer_limit is not None and tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    return min(limits, default=FALLBACK_MAX_LENGTH)


def _labels(config: PretrainedConfig) -> list[str]:
    id2label: dict[Any, Any] = dict(config.id2label or {})
    return [str(id2label.get(i, f"LABEL_{i}")) for i in range(int(config.num_labels or 0))]


def _token_ids(tokenizer: Any) -> TokenIds:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if pad is None:
        # Decoder-only models often define no pad token; padded positions are masked, so eos serves.
        pad = eos if eos is not None else 0
    return TokenIds(pad=int(pad), eos=eos, bos=tokenizer.bos_token_id)


def _load_tokenizer(path: Path) -> Any:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: the tokenizer does not load ({type(exc).__name__}: {exc})") from exc
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ModelLoadError(f"{path}: heldout needs a fast tokenizer (tokenizer.json); this one has none")
    return tokenizer


def _load_weights(path: Path, task: ModelTask, dtype: torch.dtype) -> PreTrainedModel:
    try:
        model, info = AUTO_CLASSES[task].from_pretrained(
            path, dtype=dtype, local_files_only=True, output_loading_info=True
        )
    except Exception as exc:
        raise ModelLoadError(f"{path}: the weights do not load ({type(exc).__name__}: {exc})") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        # A freshly initialised head would serve random predictions; refuse instead.
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ModelLoadError(f"{path}: the weights lack {len(missing)} tensor(s) the architecture needs: {shown}")
    return model


def _versions(files: ModelFiles | AdapterFiles) -> tuple[str, ModelRef | None, ModelRef | None]:
    """The served version and, for an adapter, its base's and its own."""
    if isinstance(files, ModelFiles):
        return weights_sha256(files), None, None
    base = ModelRef(files.base.path.name, weights_sha256(files.base))
    adapter = ModelRef(files.path.name, adapter_sha256(files))
    return combined_sha256(base.version, adapter.version), base, adapter


def load_model(
    files: ModelFiles | AdapterFiles,
    device: torch.device,
    dtype: torch.dtype,
    name: str | None = None,
    *,
    merge_adapter: bool = True,
) -> LoadedModel:
    """Load weights and tokenizer, in eval mode on ``device``; never reaches a hub.

    An adapter is put on its base (merged into it unless ``merge_adapter`` is off); the task, labels and
    limits are the base's, and the tokenizer is the adapter directory's when it has one.
    """
    base = files.base if isinstance(files, AdapterFiles) else files
    try:
        config = AutoConfig.from_pretrained(base.path, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{base.path}/config.json: not a usable config ({type(exc).__name__}: {exc})") from exc
    try:
        task = detect_task(config)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{base.path}: {exc}") from None
    if isinstance(files, AdapterFiles):
        check_adapter_task(files, task)
    own_tokenizer = isinstance(files, ModelFiles) or files.has_tokenizer
    tokenizer = _load_tokenizer(files.path if own_tokenizer else base.path)
    # Typed Any: the decorator on PreTrainedModel.to hides its signature from mypy.
    model: Any = _load_weights(base.path, task, dtype)
    if isinstance(files, AdapterFiles):
        model = apply_adapter(model, files, merge_adapter)
    model.to(device).eval()
    version, base_ref, adapter_ref = _versions(files)
    return LoadedModel(
        name=name or files.path.name,
        version=version,
        task=task,
        device=device,
        dtype=dtype,
        model=model,
        tokenizer=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()),
        token_ids=_token_ids(tokenizer),
        labels=_labels(config) if task.classifies else [],
        max_length=max_length(config, getattr(tokenizer, "model_max_length", None)),
        base_model=base_ref,
        adapter=adapter_ref,
    )
