"""Loading: task, labels and limits from the directory; device and dtype choice; clear errors for bad dirs."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import BertConfig, BertModel

from service.inference import device as device_module
from service.inference.device import resolve_device, resolve_dtype
from service.inference.loader import LoadedModel, load_model
from service.inference.model_dir import ModelLoadError, inspect_model_dir
from service.tasks import ModelTask
from tests.tiny_models import CLASSIFIER_LABELS, MULTI_LABELS

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

CPU = torch.device("cpu")


def load(path: Path) -> LoadedModel:
    return load_model(inspect_model_dir(path), CPU, torch.float32)


def test_tasks_labels_and_limits_come_from_the_directory(
    classifier_dir: Path, multilabel_dir: Path, seq2seq_dir: Path, copy_lm_dir: Path
) -> None:
    classifier = load(classifier_dir)
    assert classifier.task is ModelTask.classification
    assert (classifier.labels, classifier.max_length) == (CLASSIFIER_LABELS, 24)
    assert classifier.name == "tiny-sentiment"
    assert load(multilabel_dir).task is ModelTask.multi_label
    assert load(multilabel_dir).labels == MULTI_LABELS
    seq2seq = load(seq2seq_dir)
    assert (seq2seq.task, seq2seq.labels, seq2seq.max_length) == (ModelTask.seq2seq_lm, [], 64)
    assert load(copy_lm_dir).task is ModelTask.causal_lm
    assert not classifier.model.training


def test_version_is_the_sha256_of_the_weights(classifier_dir: Path, tmp_path: Path) -> None:
    weights = classifier_dir / "model.safetensors"
    expected = hashlib.sha256(b"model.safetensors\0" + weights.read_bytes()).hexdigest()
    assert load(classifier_dir).version == expected

    changed = tmp_path / "changed"
    shutil.copytree(classifier_dir, changed)
    model = load(changed).model
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    model.save_pretrained(changed)
    assert load(changed).version != expected


def test_auto_device_and_dtype_on_cpu() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", CPU) is torch.float32
    assert resolve_dtype("bfloat16", CPU) is torch.bfloat16


def test_auto_dtype_on_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = torch.device("cuda:0")
    monkeypatch.setattr(device_module, "_native_bf16", lambda _: True)
    assert resolve_dtype("auto", gpu) is torch.bfloat16
    monkeypatch.setattr(device_module, "_native_bf16", lambda _: False)
    assert resolve_dtype("auto", gpu) is torch.float16
    assert resolve_dtype("float32", gpu) is torch.float32


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        resolve_device("cuda:0")


def _broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: shutil.rmtree(d), "model directory does not exist"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is not readable JSON"),
        (lambda d: (d / "model.safetensors").unlink(), "no weight files"),
        (lambda d: _truncate(d / "model.safetensors"), "truncated safetensors"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 4), "corrupt safetensors"),
        (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer files"),
    ],
    ids=["missing-dir", "no-config", "bad-config", "no-weights", "truncated", "garbage-weights", "no-tokenizer"],
)
def test_broken_directories_name_the_path_and_the_problem(
    classifier_dir: Path, tmp_path: Path, breakage, message: str  # type: ignore[no-untyped-def]
) -> None:
    broken = _broken_copy(classifier_dir, tmp_path / "broken")
    breakage(broken)
    with pytest.raises(ModelLoadError, match=message) as error:
        inspect_model_dir(broken)
    assert str(broken) in str(error.value)


def test_unservable_architecture_and_missing_head_are_refused(
    classifier_dir: Path, tmp_path: Path
) -> None:
    encoder_only = _broken_copy(classifier_dir, tmp_path / "encoder")
    config = json.loads((encoder_only / "config.json").read_text())
    (encoder_only / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="'BertModel' is not servable"):
        load(encoder_only)

    headless = _broken_copy(classifier_dir, tmp_path / "headless")
    BertModel(BertConfig(**{**config, "architectures": ["BertModel"]})).save_pretrained(headless)
    (headless / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="weights lack .* classifier"):
        load(headless)


def test_serve_refuses_a_broken_directory_before_starting(tmp_path: Path) -> None:
    env = {**os.environ, "HELDOUT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--model", str(tmp_path / "nowhere")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"error: {tmp_path / 'nowhere'}: model directory does not exist" in result.stderr


def test_app_start_up_fails_on_a_corrupt_model(serve: ServeFactory, classifier_dir: Path, tmp_path: Path) -> None:
    broken = _broken_copy(classifier_dir, tmp_path / "broken")
    _truncate(broken / "model.safetensors")
    with pytest.raises(ModelLoadError, match="truncated"), serve(broken):
        pass
