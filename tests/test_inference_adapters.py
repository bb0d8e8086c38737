"""LoRA adapters served on their base: outputs checked against peft's own forward and generate."""

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
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from service.inference.loader import LoadedModel, load_model
from service.inference.model_dir import AdapterFiles, ModelLoadError, inspect_model_dir
from service.inference.packed_linear import pack_linears
from service.inference.results import ServedModel
from service.schemas.inference import ModelInfo
from tests.conftest import auth
from tests.tiny_models import CLASSIFIER_LABELS, SENTENCES, build_lora_adapter

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

EVALUATOR = auth("evaluator")
CPU = torch.device("cpu")
PROMPTS = ["a b c d =", "h a =", "g g g h a b ="]


def load(path: Path, merge: bool = True, base: Path | None = None) -> LoadedModel:
    return load_model(inspect_model_dir(path, base), CPU, torch.float32, merge_adapter=merge)


def peft_model(adapter: Path, base: Path, auto: type) -> PeftModel:
    """The oracle: the base through transformers, the adapter through peft, unmerged."""
    return PeftModel.from_pretrained(auto.from_pretrained(base), adapter).eval()


def generate(model: torch.nn.Module, tokenizer_dir: Path, texts: list[str]) -> list[str]:
    """Greedy, one prompt at a time, as peft's own ``generate`` does it."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    outputs = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt")
            sequence = model.generate(  # type: ignore[operator]
                **encoded, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )[0]
            outputs.append(tokenizer.decode(sequence[encoded["input_ids"].shape[1] :], skip_special_tokens=True))
    return outputs


def probabilities(model: torch.nn.Module, tokenizer_dir: Path, texts: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with torch.no_grad():
        rows = [torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0], -1) for text in texts]
    return torch.stack(rows)


def served_texts(client: TestClient) -> list[str]:
    response = client.post("/v1/generate", headers=EVALUATOR, json={"inputs": PROMPTS, "max_new_tokens": 6})
    assert response.status_code == 200, response.text
    return [output["text"] for output in response.json()["outputs"]]


def test_causal_lm_adapter_generates_what_peft_generates(
    serve: ServeFactory, lora_lm_dir: Path, copy_lm_dir: Path
) -> None:
    expected = generate(peft_model(lora_lm_dir, copy_lm_dir, AutoModelForCausalLM), copy_lm_dir, PROMPTS)
    with serve(lora_lm_dir) as client:
        served = served_texts(client)
    with serve(copy_lm_dir) as client:
        base = served_texts(client)
    assert served == expected
    assert served != base


def test_classifier_adapter_probabilities_equal_peft_forward(
    serve: ServeFactory, lora_classifier_dir: Path, classifier_dir: Path
) -> None:
    oracle = peft_model(lora_classifier_dir, classifier_dir, AutoModelForSequenceClassification)
    expected = probabilities(oracle, classifier_dir, SENTENCES)
    base_model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    base = probabilities(base_model, classifier_dir, SENTENCES)
    assert not torch.allclose(expected, base, atol=1e-2)
    with serve(lora_classifier_dir) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": SENTENCES, "return_scores": True})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "sentiment-lora"
    for prediction, row in zip(response.json()["predictions"], expected, strict=True):
        assert [prediction["scores"][label] for label in CLASSIFIER_LABELS] == pytest.approx(row.tolist(), abs=1e-5)


def test_merged_unmerged_and_packed_give_peft_outputs(
    lora_classifier_dir: Path, classifier_dir: Path, lora_lm_dir: Path, copy_lm_dir: Path
) -> None:
    oracle = peft_model(lora_classifier_dir, classifier_dir, AutoModelForSequenceClassification)
    expected = probabilities(oracle, classifier_dir, SENTENCES)
    lm_expected = generate(peft_model(lora_lm_dir, copy_lm_dir, AutoModelForCausalLM), copy_lm_dir, PROMPTS)
    for merge in (True, False):
        classifier, lm = load(lora_classifier_dir, merge), load(lora_lm_dir, merge)
        for packed in (False, True):
            if packed:
                assert pack_linears(classifier.model) > 0 and pack_linears(lm.model) > 0
            got = probabilities(classifier.model, classifier_dir, SENTENCES)
            assert torch.allclose(got, expected, atol=1e-5), (merge, packed)
            assert generate(lm.model, copy_lm_dir, PROMPTS) == lm_expected, (merge, packed)


def test_seq2seq_adapter_equals_peft_forward(seq2seq_dir: Path, tmp_path: Path) -> None:
    adapter = build_lora_adapter(seq2seq_dir, tmp_path / "t5-lora", "SEQ_2_SEQ_LM", ["q", "v"])
    tokenizer = AutoTokenizer.from_pretrained(seq2seq_dir)
    encoded = tokenizer(SENTENCES[:2], return_tensors="pt", padding=True)
    inputs = {**encoded, "decoder_input_ids": torch.zeros((2, 3), dtype=torch.long)}
    with torch.no_grad():
        expected = peft_model(adapter, seq2seq_dir, AutoModelForSeq2SeqLM)(**inputs).logits
        base = AutoModelForSeq2SeqLM.from_pretrained(seq2seq_dir).eval()(**inputs).logits
        for merge in (True, False):
            got = load(adapter, merge).model(**inputs).logits
            assert torch.allclose(got, expected, atol=1e-5), merge
    assert not torch.allclose(expected, base, atol=1e-3)


def test_version_covers_base_and_adapter(
    lora_classifier_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    base, served = load(classifier_dir), load(lora_classifier_dir)
    assert served.version != base.version and len(served.version) == 64
    assert served.base_model is not None and served.adapter is not None
    assert (served.base_model.name, served.base_model.version) == ("tiny-sentiment", base.version)
    assert served.adapter.name == "sentiment-lora"

    retrained = tmp_path / "sentiment-lora"
    build_lora_adapter(classifier_dir, retrained, "SEQ_CLS", ["query", "value"], modules_to_save=["classifier"], seed=2)
    other = load(retrained)
    assert other.base_model == served.base_model
    assert other.adapter is not None and other.adapter.version != served.adapter.version
    assert other.version != served.version

    # Where the base lies is not what it is: a moved base gives the same version.
    moved_base = shutil.copytree(classifier_dir, tmp_path / "moved" / "tiny-sentiment")
    assert load(lora_classifier_dir, base=moved_base).version == served.version


def _with_config(adapter: Path, target: Path, **changes: object) -> Path:
    shutil.copytree(adapter, target)
    config = json.loads((target / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return target


def test_a_base_that_is_not_local_needs_heldout_base_model_path(
    lora_classifier_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    adapter = _with_config(lora_classifier_dir, tmp_path / "hub-lora", base_model_name_or_path="org/not-here")
    with pytest.raises(ModelLoadError, match="'org/not-here'.*set HELDOUT_BASE_MODEL_PATH") as error:
        inspect_model_dir(adapter)
    assert str(adapter) in str(error.value)
    files = inspect_model_dir(adapter, classifier_dir)
    assert isinstance(files, AdapterFiles) and files.base.path == classifier_dir.resolve()

    env = {**os.environ, "HELDOUT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--model", str(adapter)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"error: {adapter}" in result.stderr and "HELDOUT_BASE_MODEL_PATH" in result.stderr


def test_the_app_takes_the_base_path_and_the_merge_setting(
    serve: ServeFactory, lora_classifier_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    """HELDOUT_BASE_MODEL_PATH and HELDOUT_MERGE_ADAPTER reach the served model, not only the loader."""
    adapter = _with_config(lora_classifier_dir, tmp_path / "hub-lora", base_model_name_or_path="org/not-here")
    expected = probabilities(
        peft_model(lora_classifier_dir, classifier_dir, AutoModelForSequenceClassification), classifier_dir, SENTENCES
    )
    for merge in (True, False):
        with serve(adapter, base_model_path=classifier_dir, merge_adapter=merge) as client:
            engine = client.app.state.inference  # type: ignore[attr-defined]
            assert any("lora" in type(m).__module__ for m in engine.loaded.model.modules()) is not merge
            body = {"inputs": SENTENCES, "return_scores": True}
            response = client.post("/v1/predict", headers=EVALUATOR, json=body)
        assert response.status_code == 200, response.text
        for prediction, row in zip(response.json()["predictions"], expected, strict=True):
            got = [prediction["scores"][label] for label in CLASSIFIER_LABELS]
            assert got == pytest.approx(row.tolist(), abs=1e-5), merge


def test_target_modules_the_base_lacks_are_named(
    lora_classifier_dir: Path, classifier_dir: Path, seq2seq_dir: Path, tmp_path: Path
) -> None:
    # Before torch: T5's module names listed against BERT's weights.
    t5_names = _with_config(lora_classifier_dir, tmp_path / "t5-names", target_modules=["q", "v"])
    with pytest.raises(ModelLoadError, match=r"target_modules \['q', 'v'\] match no module of the base") as error:
        inspect_model_dir(t5_names)
    assert "query" in str(error.value)  # what the base does have
    # A regex is matched by peft's rules on the loaded base.
    regex = _with_config(lora_classifier_dir, tmp_path / "regex", target_modules=r".*\.q_proj")
    with pytest.raises(ModelLoadError, match=r"target_modules .*q_proj.* match no module of the base"):
        load(regex)
    # Targets that match, but saved weights for modules peft then never creates: refused, not dropped.
    narrower = _with_config(lora_classifier_dir, tmp_path / "narrower", target_modules=["query"])
    with pytest.raises(ModelLoadError, match=r"adapter tensor\(s\) name modules the base model lacks.*value"):
        load(narrower)


def test_an_adapter_for_another_task_is_refused(lora_classifier_dir: Path, tmp_path: Path) -> None:
    causal = _with_config(lora_classifier_dir, tmp_path / "causal", task_type="CAUSAL_LM")
    with pytest.raises(ModelLoadError, match="a CAUSAL_LM adapter cannot be put on the base model .* sequence-class"):
        load(causal)
    token_cls = _with_config(lora_classifier_dir, tmp_path / "token-cls", task_type="TOKEN_CLS")
    with pytest.raises(ModelLoadError, match="task_type 'TOKEN_CLS' is not servable"):
        inspect_model_dir(token_cls)


def test_model_info_reports_base_and_adapter(lora_classifier_dir: Path) -> None:
    loaded = load(lora_classifier_dir)
    served = ServedModel(
        name=loaded.name,
        version=loaded.version,
        task=loaded.task.value,
        device=str(loaded.device),
        dtype=loaded.dtype_name,
        labels=loaded.labels,
        max_length=loaded.max_length,
        base_model=loaded.base_model,
        adapter=loaded.adapter,
    )
    info = ModelInfo.model_validate(served, from_attributes=True).model_dump()
    assert info["base_model"] == {"name": "tiny-sentiment", "version": loaded.base_model.version}  # type: ignore[union-attr]
    assert info["adapter"] == {"name": "sentiment-lora", "version": loaded.adapter.version}  # type: ignore[union-attr]


def test_v1_models_reports_base_and_adapter(serve: ServeFactory, lora_classifier_dir: Path) -> None:
    with serve(lora_classifier_dir) as client:
        body = client.get("/v1/models", headers=auth("reader")).json()
    (info,) = body["data"] if isinstance(body, dict) else body
    assert info["base_model"]["name"] == "tiny-sentiment"
    assert info["adapter"]["name"] == "sentiment-lora"
