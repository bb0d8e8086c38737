"""Puts a LoRA adapter on its loaded base model with peft, after checking that the two belong together.

peft on its own accepts an adapter whose saved weights name modules the base lacks (a base with fewer
layers, say) and serves the base's outputs for those layers without a word; here that is a load error.
"""

import logging

from peft import LoraConfig, PeftModel, get_peft_model_state_dict, load_peft_weights
from peft.tuners.tuners_utils import check_target_module_exists
from transformers import PreTrainedModel

from service.inference.model_dir import AdapterFiles, ModelLoadError, unmatched_targets_message
from service.tasks import ModelTask

log = logging.getLogger("heldout.inference")

# What each PEFT task type may be put on, by the task of the base's architecture.
TASKS_OF_TYPE: dict[str, tuple[ModelTask, ...]] = {
    "SEQ_CLS": (ModelTask.classification, ModelTask.multi_label),
    "CAUSAL_LM": (ModelTask.causal_lm,),
    "SEQ_2_SEQ_LM": (ModelTask.seq2seq_lm,),
}
# peft expands this target itself, to every linear layer but the output head.
ALL_LINEAR = "all-linear"


def check_adapter_task(files: AdapterFiles, task: ModelTask) -> None:
    """A SEQ_CLS adapter needs a classifier base, and so on; an adapter with no task_type fits any."""
    task_type = files.config.get("task_type")
    if task_type is not None and task not in TASKS_OF_TYPE[task_type]:
        raise ModelLoadError(
            f"{files.path}: a {task_type} adapter cannot be put on the base model {files.base.path}, "
            f"whose architecture is a {task} model"
        )


def _check_targets(base: PreTrainedModel, files: AdapterFiles, config: LoraConfig) -> None:
    """peft's own check, run first so that the error names the adapter, the base and the modules it has."""
    targets = config.target_modules
    if not targets or targets == ALL_LINEAR:
        return
    modules = {name for name, _ in base.named_modules()}
    if not any(check_target_module_exists(config, name) for name in modules):
        shown = targets if isinstance(targets, str) else sorted(targets)
        raise ModelLoadError(unmatched_targets_message(files.path, files.base.path, shown, modules))


def _check_all_weights_used(model: PeftModel, files: AdapterFiles) -> None:
    saved = set(load_peft_weights(str(files.path), device="cpu"))
    used = set(get_peft_model_state_dict(model))
    unused, missing = sorted(saved - used), sorted(used - saved)
    for keys, what in ((unused, "name modules the base model lacks"), (missing, "are missing from the adapter")):
        if keys:
            shown = ", ".join(keys[:5]) + (" …" if len(keys) > 5 else "")
            raise ModelLoadError(
                f"{files.path}: {len(keys)} adapter tensor(s) {what} ({files.base.path}): {shown}; "
                "was the adapter trained on another base model?"
            )


def apply_adapter(base: PreTrainedModel, files: AdapterFiles, merge: bool) -> PreTrainedModel:
    """The base with the adapter merged into its weights, or with LoRA layers beside them (``merge`` off).

    Unmerged, the transformers model inside the PeftModel is served: its injected LoRA layers compute
    exactly what ``PeftModel.forward`` does for LoRA, and the classifier and generator keep one model type.
    """
    try:
        config = LoraConfig.from_pretrained(str(files.path))
    except Exception as exc:
        raise ModelLoadError(f"{files.path}/adapter_config.json: not a usable LoRA config ({exc})") from exc
    _check_targets(base, files, config)
    try:
        model = PeftModel.from_pretrained(base, str(files.path), config=config, is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(
            f"{files.path}: the adapter does not load onto the base model {files.base.path} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    _check_all_weights_used(model, files)
    log.info("LoRA adapter %s on base model %s, %s", files.path, files.base.path, "merged" if merge else "unmerged")
    served = model.merge_and_unload() if merge else model.get_base_model()
    assert isinstance(served, PreTrainedModel)
    return served
