"""Each explanation method served over HTTP against captum called directly (or a direct forward pass), one
sentence per call, on a tiny model and on the demo model: integrated gradients, kernel SHAP, LIME,
occlusion and attention."""

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.inference.demo_data import TEST_SET_FILE
from service.inference.packed_linear import PackedLinear
from tests.conftest import auth
from tests.explain_oracles import Reference
from tests.tiny_models import SENTENCES

pytest_plugins = ["tests.inference_fixtures", "tests.demo_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
# Float32 noise: heldout batches inputs of several lengths (padded) and steps of several inputs in one pass,
# and runs packed oneDNN layers; captum here runs one unpadded sentence through torch's own.
ATOL = 2e-5


def explain(client: TestClient, inputs: list[str], method: str, **options: Any) -> list[dict[str, Any]]:
    body = {"inputs": inputs, "method": method, **options}
    response = client.post("/v1/explain", headers=auth("evaluator"), json=body)
    assert response.status_code == 200, response.text
    explanations: list[dict[str, Any]] = response.json()["explanations"]
    return explanations


def word_values(explanation: dict[str, Any], words: list[int]) -> list[float]:
    return [explanation["words"][w]["attribution"] for w in words]


def test_integrated_gradients_equal_captum_on_a_tiny_model(serve: ServeFactory, classifier_dir: Path) -> None:
    reference = Reference(classifier_dir)
    texts = SENTENCES[:4]
    with serve(classifier_dir) as client:
        served = explain(client, texts, "integrated_gradients", n_steps=20, target="positive")
    for text, explanation in zip(texts, served, strict=True):
        tokens, delta, _ = reference.integrated_gradients(text, reference.labels.index("positive"), n_steps=20)
        assert [t["attribution"] for t in explanation["tokens"]] == pytest.approx(tokens, abs=ATOL)
        assert explanation["convergence_delta"] == pytest.approx(delta, abs=ATOL)
        assert explanation["target"] == "positive"


def test_integrated_gradients_equal_captum_on_the_demo_and_are_complete(
    serve: ServeFactory, small_demo: Path
) -> None:
    """Default 50 steps; attributions sum to p(x) - p(baseline) + delta, with p from direct forward passes.
    Served with packed layers, forced: the autotuner may pick either on a given machine, and packing must not
    change attributions beyond float noise."""
    reference = Reference(small_demo)
    rows = [json.loads(line) for line in (small_demo / TEST_SET_FILE).read_text().splitlines()]
    texts = [rows[0]["text"], rows[1]["text"]]
    with serve(small_demo, packed_linear=True) as client:
        layers = client.app.state.inference.loaded.model.modules()  # type: ignore[attr-defined]
        assert any(isinstance(layer, PackedLinear) for layer in layers), "the demo should be served packed"
        served = explain(client, texts, "integrated_gradients")
    for text, explanation in zip(texts, served, strict=True):
        target = reference.labels.index(explanation["target"])
        tokens, delta, p_baseline = reference.integrated_gradients(text, target)
        attributions = [t["attribution"] for t in explanation["tokens"]]
        assert attributions == pytest.approx(tokens, abs=ATOL)
        assert abs(explanation["convergence_delta"]) < 0.05
        with torch.no_grad():
            p_input = float(reference.probabilities(reference.encode(text).ids)[0, target])
        assert sum(attributions) == pytest.approx(p_input - p_baseline + explanation["convergence_delta"], abs=1e-5)


@pytest.mark.parametrize("method", ["kernel_shap", "lime"])
def test_sampled_methods_equal_captum_with_the_same_seed_and_reproduce(
    serve: ServeFactory, classifier_dir: Path, method: str
) -> None:
    reference = Reference(classifier_dir)
    texts = SENTENCES[4:7]
    with serve(classifier_dir) as client:
        first = explain(client, texts, method, n_samples=60, seed=7, faithfulness=False)
        again = explain(client, texts, method, n_samples=60, seed=7, faithfulness=False)
        other = explain(client, texts, method, n_samples=60, seed=8, faithfulness=False)
    assert first == [{**e, "id": f["id"]} for e, f in zip(again, first, strict=True)]
    assert [e["words"] for e in other] != [e["words"] for e in first]
    for text, explanation in zip(texts, first, strict=True):
        target = reference.labels.index(explanation["target"])
        expected = getattr(reference, method)(text, target, n_samples=60, seed=7)
        assert word_values(explanation, list(expected)) == pytest.approx(list(expected.values()), abs=1e-4)


def test_occlusion_is_leave_one_word_out(serve: ServeFactory, classifier_dir: Path) -> None:
    reference = Reference(classifier_dir)
    texts = SENTENCES[:3]
    with serve(classifier_dir) as client:
        served = explain(client, texts, "occlusion", target="negative")
    for text, explanation in zip(texts, served, strict=True):
        expected = reference.occlusion(text, reference.labels.index("negative"))
        assert word_values(explanation, list(expected)) == pytest.approx(list(expected.values()), abs=ATOL)


def test_attention_is_the_last_layers_from_the_first_token_averaged_over_heads(
    serve: ServeFactory, classifier_dir: Path
) -> None:
    reference = Reference(classifier_dir, attention="eager")
    texts = SENTENCES[5:8]
    with serve(classifier_dir) as client:
        served = explain(client, texts, "attention")
        # The pass switched the shared model to eager attention and back.
        assert client.app.state.inference.loaded.model.config._attn_implementation == "sdpa"  # type: ignore[attr-defined]
    for text, explanation in zip(texts, served, strict=True):
        assert explanation["convergence_delta"] is None
        expected = reference.last_layer_attention(text)
        # The engine's lanes and this thread may run different numbers of intra-op threads: float noise only.
        assert [t["attribution"] for t in explanation["tokens"]] == pytest.approx(expected, rel=1e-5, abs=1e-6)
