"""A causal LM explained over HTTP: the continuation's log-probability attributed to the prompt's tokens,
against captum's own LLM classes (``LLMGradientAttribution``, ``LLMAttribution``) called directly."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from captum.attr import (
    FeatureAblation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from fastapi.testclient import TestClient
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import auth

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
PROMPTS = ["a b c d =", "h g f e ="]


def explain(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/v1/explain", headers=auth("evaluator"), json=body)
    assert response.status_code == 200, response.text
    explanations: list[dict[str, Any]] = response.json()["explanations"]
    return explanations


def reference(copy_lm_dir: Path) -> tuple[Any, Any, int]:
    model = AutoModelForCausalLM.from_pretrained(copy_lm_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(copy_lm_dir, local_files_only=True)
    return model, tokenizer, int(tokenizer.eos_token_id)  # GPT-2 has no pad token: heldout pads with eos


def test_integrated_gradients_equal_captums_llm_gradient_attribution(serve: ServeFactory, copy_lm_dir: Path) -> None:
    model, tokenizer, pad = reference(copy_lm_dir)
    with serve(copy_lm_dir) as client:
        greedy = explain(client, {"inputs": PROMPTS, "method": "integrated_gradients", "n_steps": 16})
        given = explain(client, {"inputs": PROMPTS[:1], "method": "integrated_gradients", "target": " b b b b"})
    for prompt, explanation in zip(PROMPTS, greedy, strict=True):
        assert explanation["label"] == explanation["target"] == " " + prompt[:-2]  # the copy model copies
        assert 0 < explanation["score"] <= 1 and explanation["faithfulness"] is None
        inputs = TextTokenInput(prompt, tokenizer)
        explainer = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tokenizer)
        baseline = torch.full_like(inputs.to_tensor(), pad)
        expected = explainer.attribute(inputs, target=explanation["target"], n_steps=16, baselines=baseline)
        served = [t["attribution"] for t in explanation["tokens"]]
        assert served == pytest.approx(expected.seq_attr.tolist(), abs=1e-4)
        assert [w["text"] for w in explanation["words"]] == prompt.split()
    assert given[0]["target"] == " b b b b" and given[0]["label"] == " a b c d"
    # Completeness, by direct forward passes: attributions sum to log p(x) - log p(baseline) + delta.
    prompt = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    target = tokenizer(" b b b b", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        log_p = [log_probability(model, start, target) for start in (prompt, torch.full_like(prompt, pad))]
    attributions = sum(t["attribution"] for t in given[0]["tokens"])
    assert attributions == pytest.approx(log_p[0] - log_p[1] + given[0]["convergence_delta"], abs=1e-4)


def log_probability(model: Any, prompt: torch.Tensor, target: torch.Tensor) -> float:
    logits = model(input_ids=torch.cat([prompt, target], dim=1)).logits[0, prompt.shape[1] - 1 : -1]
    return float(torch.log_softmax(logits, -1).gather(-1, target[0].unsqueeze(-1)).sum())


def test_occlusion_equals_captums_llm_attribution(serve: ServeFactory, copy_lm_dir: Path) -> None:
    model, tokenizer, pad = reference(copy_lm_dir)
    with serve(copy_lm_dir) as client:
        served = explain(client, {"inputs": PROMPTS, "method": "occlusion"})
    for prompt, explanation in zip(PROMPTS, served, strict=True):
        inputs = TextTokenInput(prompt, tokenizer, baselines=pad)
        assert len(inputs.values) == len(prompt.split())  # one token a word here, so words and tokens agree
        # captum's one-pass scoring of the whole continuation (its cached, token-by-token mode scores a perturbed
        # prompt otherwise, and disagrees with a direct forward pass).
        explainer = LLMAttribution(FeatureAblation(model), tokenizer)
        expected = explainer.attribute(inputs, target=explanation["target"], use_cached_outputs=False)
        words = [w["attribution"] for w in explanation["words"]]
        assert words == pytest.approx(expected.seq_attr.tolist(), abs=1e-4)
        assert max(words) > 0.5  # deleting a copied letter costs the continuation much of its log-probability


def test_an_empty_target_continuation_gets_422(serve: ServeFactory, copy_lm_dir: Path) -> None:
    with serve(copy_lm_dir) as client:
        response = client.post(
            "/v1/explain", headers=auth("evaluator"), json={"inputs": ["a b"], "method": "occlusion", "target": ""}
        )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "inputs.0", response.text
