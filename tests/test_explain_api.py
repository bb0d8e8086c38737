"""/v1/explain over HTTP: the contract, refusals, bounds, the queue, metrics, and faithfulness measured
through /v1/predict."""

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.prometheus_text import total
from tests.tiny_models import SENTENCES, keyword_sentence

pytest_plugins = ["tests.inference_fixtures", "tests.demo_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]
METHODS = ["integrated_gradients", "attention", "lime", "kernel_shap", "occlusion"]
FAITHFUL = ["integrated_gradients", "kernel_shap", "lime", "occlusion"]
TEXTS = ["The film, at last: a delight!", "  a dull   and lifeless script sinks the cast "]


def post(client: TestClient, body: dict[str, Any], role: str = "evaluator", **headers: str) -> Any:
    return client.post("/v1/explain", headers={**auth(role), **headers}, json=body)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_answers_the_contract(serve: ServeFactory, classifier_dir: Path, method: str) -> None:
    with serve(classifier_dir) as client:
        response = post(client, {"inputs": TEXTS, "method": method, "n_steps": 8, "n_samples": 30})
        predicted = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": TEXTS}).json()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == method and body["model"] == "tiny-sentiment" and len(body["model_version"]) == 64
    for text, explanation, prediction in zip(TEXTS, body["explanations"], predicted["predictions"], strict=True):
        assert explanation["label"] == prediction["label"] == explanation["target"]
        assert explanation["score"] == pytest.approx(prediction["score"], abs=1e-5)
        assert [w["text"] for w in explanation["words"]] == text.split()
        for item in explanation["tokens"] + explanation["words"]:
            assert text[item["start"] : item["end"]] == item["text"]
        tokens_of = [
            [t for t in explanation["tokens"] if w["start"] <= t["start"] < w["end"]] for w in explanation["words"]
        ]
        assert sum(map(len, tokens_of)) == len(explanation["tokens"])
        for word, tokens in zip(explanation["words"], tokens_of, strict=True):
            assert word["attribution"] == pytest.approx(sum(t["attribution"] for t in tokens), abs=1e-6)
        assert (explanation["convergence_delta"] is None) == (method != "integrated_gradients")
        faithfulness = explanation["faithfulness"]
        assert set(faithfulness) == {"comprehensiveness", "sufficiency", "random_comprehensiveness"}
        assert all(-1 <= value <= 1 for value in faithfulness.values())


def test_a_one_word_input_gets_its_exact_shapley_value(serve: ServeFactory, classifier_dir: Path) -> None:
    """One feature: kernel SHAP's value is f(x) - f(baseline), what occlusion measures (captum's sampler
    fails on one feature; schemathesis found the 500)."""
    with serve(classifier_dir) as client:
        shap, leave_out = (
            post(client, {"inputs": ["\u00a6x", "\u00f7"], "method": method, "n_samples": 30})
            for method in ("kernel_shap", "occlusion")
        )
    assert shap.status_code == leave_out.status_code == 200, shap.text
    for mine, exact in zip(shap.json()["explanations"], leave_out.json()["explanations"], strict=True):
        assert [w["attribution"] for w in mine["words"]] == pytest.approx([w["attribution"] for w in exact["words"]])


def test_faithfulness_can_be_turned_off_and_a_multilabel_model_is_explained(
    serve: ServeFactory, multilabel_dir: Path
) -> None:
    with serve(multilabel_dir) as client:
        body = post(client, {"inputs": TEXTS, "method": "occlusion", "faithfulness": False, "target": "drama"}).json()
        predicted = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": TEXTS}).json()
    for explanation, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert explanation["faithfulness"] is None and explanation["target"] == "drama"
        assert explanation["label"] == prediction["label"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": ["good"], "method": "saliency"}, "method"),
        ({"inputs": [], "method": "occlusion"}, "inputs"),
        ({"inputs": ["good"], "method": "integrated_gradients", "n_steps": 51}, "n_steps"),
        ({"inputs": ["good"], "method": "lime", "n_samples": 101}, "n_samples"),
        ({"inputs": ["good"] * 4, "method": "occlusion"}, "inputs"),
        ({"inputs": ["good"], "method": "occlusion", "target": "sarcastic"}, "target"),
        ({"inputs": ["good", "   "], "method": "occlusion"}, "inputs.1"),
        ({"inputs": ["good"], "method": "occlusion", "n_steps": 0}, "n_steps"),
        ({"inputs": ["good"], "method": "occlusion", "extra": 1}, "extra"),
    ],
)
def test_bad_requests_get_422_naming_the_field(
    serve: ServeFactory, classifier_dir: Path, body: dict[str, Any], field: str
) -> None:
    caps = {"explain_max_steps": 50, "explain_max_samples": 100, "explain_max_inputs": 3}
    with serve(classifier_dir, **caps) as client:
        response = post(client, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]], response.json()


@pytest.mark.parametrize("method", ["attention", "lime", "kernel_shap"])
def test_a_method_that_does_not_explain_a_causal_lm_gets_422_naming_it(
    serve: ServeFactory, copy_lm_dir: Path, method: str
) -> None:
    with serve(copy_lm_dir) as client:
        response = post(client, {"inputs": ["a b c d ="], "method": method})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert method in detail and "integrated_gradients, occlusion" in detail


def test_a_seq2seq_model_explains_nothing(serve: ServeFactory, seq2seq_dir: Path) -> None:
    with serve(seq2seq_dir) as client:
        response = post(client, {"inputs": ["a b"], "method": "occlusion"})
    assert response.status_code == 422 and "methods that do: none" in response.json()["detail"]


def test_a_reader_key_gets_403_and_no_key_401(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        assert post(client, {"inputs": ["good"], "method": "occlusion"}, role="reader").status_code == 403
        assert client.post("/v1/explain", json={"inputs": ["good"], "method": "occlusion"}).status_code == 401


def test_no_model_served_is_503(client: TestClient) -> None:
    assert post(client, {"inputs": ["good"], "method": "occlusion"}).status_code == 503


@pytest.fixture
def held_lanes(serve: ServeFactory, classifier_dir: Path) -> Iterator[Callable[..., Any]]:
    """``start(**settings)`` serves the classifier with every lane of its engine borrowed, so explanations
    wait; ``release()`` hands the lanes back."""
    state: dict[str, Any] = {}

    def start(**settings: Any) -> tuple[TestClient, Callable[[], None]]:
        context = serve(classifier_dir, **settings)
        client = state["client"] = context.__enter__()
        state["context"] = context
        engine = client.app.state.inference  # type: ignore[attr-defined]
        lanes = client.portal.call(engine.borrow_lanes, engine.lanes)  # type: ignore[union-attr]
        return client, lambda: client.portal.call(engine.return_lanes, lanes)  # type: ignore[union-attr]

    yield start
    if "context" in state:
        state["context"].__exit__(None, None, None)


def test_a_full_explanation_queue_gets_429_with_retry_after(held_lanes: Callable[..., Any]) -> None:
    client, release = held_lanes(explain_max_queue=1)
    first: dict[str, Any] = {}
    waiting = threading.Thread(target=lambda: first.update(r=post(client, {"inputs": ["good"], "method": "occlusion"})))
    waiting.start()
    explainer = client.app.state.explainer  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while explainer._admitted < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    refused = post(client, {"inputs": ["bad"], "method": "occlusion"})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    release()
    waiting.join(30)
    assert first["r"].status_code == 200, first["r"].text


def test_an_explanation_past_its_deadline_gets_504(held_lanes: Callable[..., Any]) -> None:
    client, release = held_lanes(explain_timeout_s=0.5)
    started = time.monotonic()
    response = post(client, {"inputs": ["good"], "method": "occlusion"})
    assert response.status_code == 504, response.text
    assert "HELDOUT_EXPLAIN_TIMEOUT_S" in response.json()["detail"] and time.monotonic() - started < 5
    release()
    assert post(client, {"inputs": ["good"], "method": "occlusion"}).status_code == 200


def test_explanations_are_counted_and_timed_by_method(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        labels = {"model": "tiny-sentiment", "method": "occlusion"}
        before = client.get("/metrics").text
        assert post(client, {"inputs": TEXTS, "method": "occlusion"}).status_code == 200
        after = client.get("/metrics").text
    assert total(after, "heldout_explanations_total", labels) - total(before, "heldout_explanations_total", labels) == 2
    count = "heldout_explanation_duration_seconds_count"
    assert total(after, count, labels) - total(before, count, labels) == 1


def deletion_drops(client: TestClient, texts: list[str], method: str, draws: int = 10) -> tuple[float, float]:
    """Mean drop of the target's probability, through /v1/predict, when the top 20% of the words by the
    explanation are deleted, and when as many random words are (``draws`` draws each)."""
    explanations = post(client, {"inputs": texts, "method": method, "faithfulness": False}).json()["explanations"]
    rng = random.Random(0)
    top, chance = [], []
    for text, explanation in zip(texts, explanations, strict=True):
        words = [w["text"] for w in explanation["words"]]
        k = max(1, math.ceil(0.2 * len(words)))
        ranked = sorted(range(len(words)), key=lambda i: -explanation["words"][i]["attribution"])
        variants = [set(ranked[:k])] + [set(rng.sample(range(len(words)), k)) for _ in range(draws)]
        inputs = [text] + [" ".join(w for i, w in enumerate(words) if i not in gone) for gone in variants]
        response = client.post("/v1/predict", headers=auth("evaluator"), json={"inputs": inputs, "return_scores": True})
        p = [prediction["scores"][explanation["target"]] for prediction in response.json()["predictions"]]
        top.append(p[0] - p[1])
        chance.append(p[0] - sum(p[2:]) / draws)
    return sum(top) / len(top), sum(chance) / len(chance)


@pytest.mark.parametrize("method", FAITHFUL)
def test_deleting_the_top_words_beats_deleting_random_ones(
    serve: ServeFactory, keyword_dir: Path, method: str
) -> None:
    rng = random.Random(3)
    texts = [keyword_sentence(rng, label) for label in ("negative", "positive") for _ in range(3)]
    with serve(keyword_dir) as client:
        top, chance = deletion_drops(client, texts, method)
        explained = post(client, {"inputs": texts, "method": method}).json()["explanations"]
    faithfulness = [e["faithfulness"] for e in explained]
    assert top > 0.15 and top > 3 * chance, (top, chance)
    comprehensiveness = sum(f["comprehensiveness"] for f in faithfulness) / len(faithfulness)
    random_comprehensiveness = sum(f["random_comprehensiveness"] for f in faithfulness) / len(faithfulness)
    assert comprehensiveness > 2 * random_comprehensiveness, faithfulness


@pytest.mark.slow
@pytest.mark.parametrize("method", FAITHFUL)
def test_on_the_demo_deleting_the_top_words_beats_deleting_random_ones(
    serve: ServeFactory, full_demo: Path, method: str
) -> None:
    import json

    rows = [json.loads(line) for line in (full_demo / "test.jsonl").read_text().splitlines()][:12]
    with serve(full_demo) as client:
        top, chance = deletion_drops(client, [row["text"] for row in rows], method)
    assert top > 0.1 and top > 3 * chance, (top, chance)


def test_sentences_never_seen_in_training_are_still_explained(serve: ServeFactory, classifier_dir: Path) -> None:
    """Unknown words (the tokenizer's [UNK]) and truncation: words past the model's length get 0."""
    long_text = " ".join(SENTENCES) + " zyzzyva"
    with serve(classifier_dir) as client:
        explanation = post(client, {"inputs": [long_text], "method": "occlusion"}).json()["explanations"][0]
    assert explanation["truncated"] is True
    last = {"text": "zyzzyva", "start": len(long_text) - 7, "end": len(long_text), "attribution": 0.0}
    assert explanation["words"][-1] == last
