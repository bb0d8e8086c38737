"""/v1/models, /v1/predict and /v1/generate over HTTP, checked against the models' own forward passes."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import sacrebleu
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from service.db.models import PredictionLogEntry
from service.inference.classifier import Classifier
from tests.conftest import auth
from tests.prometheus_text import samples, total
from tests.tiny_models import CLASSIFIER_LABELS, MULTI_LABELS, SENTENCES

pytest_plugins = ["tests.inference_fixtures"]
ServeFactory = Callable[..., AbstractContextManager[TestClient]]

EVALUATOR = auth("evaluator")
LONG_TEXT = " ".join(SENTENCES * 3)


def direct_probabilities(model_dir: Path, texts: list[str], multi_label: bool = False) -> torch.Tensor:
    """The oracle: transformers' own tokenizer and forward, one text at a time, no batching."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, truncation=True, max_length=24, return_tensors="pt")).logits[0]
            rows.append(torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1))
    return torch.stack(rows)


def test_models_lists_the_served_model(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        response = client.get("/v1/models", headers=auth("reader"))
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    (info,) = response.json()["data"]
    assert (info["id"], info["object"], info["owned_by"]) == ("tiny-sentiment", "model", "heldout")
    assert abs(info["created"] - time.time()) < 600
    assert info["name"] == "tiny-sentiment"
    assert info["task"] == "sequence-classification"
    assert (info["device"], info["dtype"], info["labels"], info["max_length"]) == (
        "cpu",
        "float32",
        CLASSIFIER_LABELS,
        24,
    )
    assert len(info["version"]) == 64


def test_http_predictions_equal_direct_forward_outputs(serve: ServeFactory, classifier_dir: Path) -> None:
    texts = [*SENTENCES, LONG_TEXT, "x"]
    expected = direct_probabilities(classifier_dir, texts)
    with serve(classifier_dir) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": texts, "return_scores": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-sentiment" and len(body["model_version"]) == 64
    predictions = body["predictions"]
    assert len({p["id"] for p in predictions}) == len(texts)
    for prediction, row in zip(predictions, expected, strict=True):
        assert prediction["label"] == CLASSIFIER_LABELS[int(row.argmax())]
        assert prediction["score"] == pytest.approx(float(row.max()), abs=1e-5)
        assert [prediction["scores"][label] for label in CLASSIFIER_LABELS] == pytest.approx(row.tolist(), abs=1e-5)
    assert [p["truncated"] for p in predictions] == [False] * len(SENTENCES) + [True, False]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    serve: ServeFactory, classifier_dir: Path
) -> None:
    expected = direct_probabilities(classifier_dir, SENTENCES)
    with serve(classifier_dir, max_batch_delay_ms=50) as client:
        before = client.get("/metrics").text

        def one(i: int) -> dict:  # type: ignore[type-arg]
            text = SENTENCES[i % len(SENTENCES)]
            return client.post("/v1/predict", headers=EVALUATOR, json={"inputs": [text]}).json()["predictions"][0]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(32)))
        metrics = client.get("/metrics").text
    for i, result in enumerate(results):
        assert result["score"] == pytest.approx(float(expected[i % len(SENTENCES)].max()), abs=1e-5)
        assert "scores" not in result
    model = {"model": "tiny-sentiment"}
    count, size_sum = "heldout_inference_batch_size_count", "heldout_inference_batch_size_sum"
    batches = total(metrics, count, model) - total(before, count, model)
    examples = total(metrics, size_sum, model) - total(before, size_sum, model)
    assert examples == 32 and batches < 32


def test_batches_running_side_by_side_keep_their_own_outputs_and_embeddings(
    serve: ServeFactory, classifier_dir: Path
) -> None:
    """Two lanes run forward passes at once: each answer and each logged embedding belongs to its own text."""
    expected = direct_probabilities(classifier_dir, SENTENCES)
    settings = {"concurrent_batches": 2, "torch_threads": 2, "max_batch_size": 2, "log_input_text": True}
    with serve(classifier_dir, **settings) as client:

        def one(i: int) -> dict:  # type: ignore[type-arg]
            text = SENTENCES[i % len(SENTENCES)]
            body = {"inputs": [text], "return_scores": True}
            return client.post("/v1/predict", headers=EVALUATOR, json=body).json()["predictions"][0]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(160)))
        client.app.state.inference.flush_log()  # type: ignore[attr-defined]
        with client.app.state.db.session() as session:  # type: ignore[attr-defined]
            logged = {row.id: row for row in session.scalars(select(PredictionLogEntry))}
    embeddings: dict[str, list[list[float]]] = {}
    for i, result in enumerate(results):
        assert list(result["scores"].values()) == pytest.approx(expected[i % len(SENTENCES)].tolist(), abs=1e-5)
        row = logged[result["id"]]
        assert row.input_text == SENTENCES[i % len(SENTENCES)]
        embeddings.setdefault(row.input_text, []).append(row.features["embedding"])
    for text, sketches in embeddings.items():
        for sketch in sketches[1:]:
            assert sketch == pytest.approx(sketches[0], abs=1e-3), text  # stored rounded to 4 decimals
    assert len({tuple(round(v, 3) for v in sketches[0]) for sketches in embeddings.values()}) == len(embeddings)


def test_multi_label_returns_every_label_above_the_threshold(serve: ServeFactory, multilabel_dir: Path) -> None:
    expected = direct_probabilities(multilabel_dir, SENTENCES, multi_label=True)
    ordered = expected.flatten().sort().values
    middle = len(ordered) // 2
    threshold = float(ordered[middle - 1] + ordered[middle]) / 2  # between two outputs, not on one
    with serve(multilabel_dir, multilabel_threshold=threshold) as client:
        response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": SENTENCES})
    assert response.status_code == 200, response.text
    for prediction, row in zip(response.json()["predictions"], expected, strict=True):
        above = [i for i, p in enumerate(row.tolist()) if p > threshold]
        assert prediction["label"] == [MULTI_LABELS[i] for i in above]
        assert prediction["score"] == pytest.approx([float(row[i]) for i in above], abs=1e-5)


def test_copy_model_generates_the_copy(serve: ServeFactory, copy_lm_dir: Path) -> None:
    sources = ["a b c d", "h g f e", "b b a h", "c e g a", "d a f b", "e h c c"]
    with serve(copy_lm_dir) as client:
        response = client.post(
            "/v1/generate", headers=EVALUATOR, json={"inputs": [f"{s} =" for s in sources], "max_new_tokens": 8}
        )
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    texts = [output["text"].strip() for output in outputs]
    assert all(texts)
    assert [output["tokens"] for output in outputs] == [4] * len(sources)
    bleu = sacrebleu.corpus_bleu(texts, [sources])
    assert bleu.score > 80, (texts, bleu)


def direct_generate(model_dir: Path, texts: list[str], causal: bool, **options: object) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(model_dir).eval()
    outputs = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt")
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            sequence = model.generate(**encoded, pad_token_id=pad, **options)[0]
            generated = sequence[encoded["input_ids"].shape[1] :] if causal else sequence[1:]
            outputs.append(tokenizer.decode(generated, skip_special_tokens=True))
    return outputs


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_direct_generate(
    serve: ServeFactory, copy_lm_dir: Path, seq2seq_dir: Path, num_beams: int
) -> None:
    prompts = {copy_lm_dir: ["a b c d =", "h a =", "g g g h a b ="], seq2seq_dir: SENTENCES[:4]}
    for model_dir, texts in prompts.items():
        causal = model_dir == copy_lm_dir
        expected = direct_generate(model_dir, texts, causal, max_new_tokens=6, num_beams=num_beams, do_sample=False)
        with serve(model_dir) as client:
            body = {"inputs": texts, "max_new_tokens": 6, "num_beams": num_beams}
            response = client.post("/v1/generate", headers=EVALUATOR, json=body)
        assert response.status_code == 200, response.text
        assert [output["text"] for output in response.json()["outputs"]] == expected


def test_seeded_sampling_repeats(serve: ServeFactory, seq2seq_dir: Path) -> None:
    body = {"inputs": SENTENCES[:3], "max_new_tokens": 8, "do_sample": True, "temperature": 1.5, "seed": 7}
    with serve(seq2seq_dir) as client:
        first = client.post("/v1/generate", headers=EVALUATOR, json=body).json()["outputs"]
        second = client.post("/v1/generate", headers=EVALUATOR, json=body).json()["outputs"]
    assert [o["text"] for o in first] == [o["text"] for o in second]
    assert {o["id"] for o in first}.isdisjoint(o["id"] for o in second)


def test_seeded_sampling_repeats_while_other_sampling_runs_beside_it(serve: ServeFactory, seq2seq_dir: Path) -> None:
    seeded = {"inputs": SENTENCES[:2], "max_new_tokens": 8, "do_sample": True, "temperature": 1.5, "seed": 11}
    noise = {"inputs": SENTENCES[2:4], "max_new_tokens": 8, "do_sample": True, "temperature": 1.5}
    with serve(seq2seq_dir, concurrent_batches=2, torch_threads=2) as client:

        def send(body: dict) -> list[str]:  # type: ignore[type-arg]
            response = client.post("/v1/generate", headers=EVALUATOR, json=body)
            return [o["text"] for o in response.json()["outputs"]]

        alone = send(seeded)
        with ThreadPoolExecutor(8) as pool:
            crowded = list(pool.map(send, [noise, seeded, noise, noise, seeded, noise]))
    assert crowded[1] == alone and crowded[4] == alone


def assert_problem(response, status: int, field: str | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    if field:
        assert field in body["detail"]
    return body


def test_bad_predict_requests_are_4xx_problems(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir, max_inputs=3) as client:
        post = lambda body: client.post("/v1/predict", headers=EVALUATOR, json=body)  # noqa: E731
        assert_problem(post({"inputs": []}), 422, "inputs")
        assert_problem(post({"inputs": [""]}), 422, "inputs")
        assert_problem(post({"inputs": [1, 2]}), 422, "inputs")
        assert_problem(post({"inputs": "a string"}), 422, "inputs")
        assert_problem(post({"inputs": ["a"], "extra": 1}), 422, "extra")
        assert_problem(post({"inputs": ["a"] * 4}), 422, "HELDOUT_MAX_INPUTS")
        assert_problem(client.post("/v1/generate", headers=EVALUATOR, json={"inputs": ["a"]}), 409, "/v1/predict")
        assert_problem(client.post("/v1/predict", json={"inputs": ["a"]}), 401)
        assert_problem(client.post("/v1/predict", headers=auth("reader"), json={"inputs": ["a"]}), 403)


def test_bad_generate_requests_are_4xx_problems(serve: ServeFactory, copy_lm_dir: Path) -> None:
    with serve(copy_lm_dir, max_new_tokens=16) as client:
        post = lambda body: client.post("/v1/generate", headers=EVALUATOR, json=body)  # noqa: E731
        assert_problem(post({"inputs": ["a"], "max_new_tokens": 17}), 422, "HELDOUT_MAX_NEW_TOKENS")
        assert_problem(post({"inputs": ["a"], "max_new_tokens": 0}), 422, "max_new_tokens")
        assert_problem(post({"inputs": ["a"], "num_beams": 0}), 422, "num_beams")
        assert_problem(post({"inputs": ["a"], "num_beams": 9}), 422, "num_beams")
        assert_problem(post({"inputs": ["a"], "temperature": 0}), 422, "temperature")
        assert_problem(client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a"]}), 409, "/v1/generate")
    with serve(copy_lm_dir) as client:
        response = client.post("/v1/generate", headers=EVALUATOR, json={"inputs": ["a"], "max_new_tokens": 32})
        assert_problem(response, 422, "maximum length")


def test_long_prompts_are_truncated_not_refused(serve: ServeFactory, copy_lm_dir: Path) -> None:
    with serve(copy_lm_dir) as client:
        body = {"inputs": ["a b " * 40 + "c d =", "a b c d ="], "max_new_tokens": 4}
        response = client.post("/v1/generate", headers=EVALUATOR, json=body)
    assert response.status_code == 200, response.text
    assert [o["truncated"] for o in response.json()["outputs"]] == [True, False]


def test_no_model_configured(serve: ServeFactory) -> None:
    with serve(None) as client:
        assert client.get("/v1/models", headers=EVALUATOR).json() == {"object": "list", "data": []}
        for path in ("/v1/predict", "/v1/generate"):
            assert_problem(client.post(path, headers=EVALUATOR, json={"inputs": ["a"]}), 503, "HELDOUT_MODEL_PATH")
        # A body that does not validate is the client's error whatever is served: 422 first, as before #13.
        assert client.post("/v1/predict", headers=EVALUATOR, json={"inputs": []}).status_code == 422
        assert client.post("/v1/generate", headers=EVALUATOR, json={"inputs": 3}).status_code == 422
        assert client.post("/v1/predict", json={"inputs": ["a"]}).status_code == 401
        assert "model" not in client.get("/readyz").json()["checks"]


def test_readiness_names_the_model_check(serve: ServeFactory, classifier_dir: Path) -> None:
    with serve(classifier_dir) as client:
        assert client.get("/readyz").json()["checks"] == {"database": True, "model": True}


def slow_forward(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    original = Classifier.__call__

    def slow(self: Classifier, texts: list[str]):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return original(self, texts)

    monkeypatch.setattr(Classifier, "__call__", slow)


def test_overload_gets_429_with_retry_after(
    serve: ServeFactory, classifier_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(classifier_dir, max_queue=2, max_inputs=2, max_batch_size=1, max_batch_delay_ms=0) as client:
        slow_forward(monkeypatch, 0.3)

        def one(_: int) -> tuple[int, str | None]:
            response = client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a", "b"]})
            return response.status_code, response.headers.get("retry-after")

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(6)))
        metrics = client.get("/metrics").text
    assert {status for status, _ in results} == {200, 429}
    assert all(retry is not None and int(retry) >= 1 for status, retry in results if status == 429)
    rejected = {"model": "tiny-sentiment", "reason": "queue_full"}
    assert total(metrics, "heldout_inference_rejected_total", rejected) >= 1


def test_request_timeout_is_503_when_queued_and_504_when_running(
    serve: ServeFactory, classifier_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(classifier_dir, request_timeout_s=0.2, max_batch_size=1, max_batch_delay_ms=0) as client:
        slow_forward(monkeypatch, 0.5)

        def one(_: int) -> int:
            return client.post("/v1/predict", headers=EVALUATOR, json={"inputs": ["a"]}).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(one, range(2)))
    assert statuses == [503, 504]


def test_prometheus_series(serve: ServeFactory, classifier_dir: Path, copy_lm_dir: Path) -> None:
    model = {"model": "tiny-sentiment"}

    def predictions(text: str) -> float:
        return sum(total(text, "heldout_predictions_total", {**model, "label": c}) for c in CLASSIFIER_LABELS)

    with serve(classifier_dir) as client:
        before = client.get("/metrics").text
        client.post("/v1/predict", headers=EVALUATOR, json={"inputs": SENTENCES})
        text = client.get("/metrics").text
    assert predictions(text) - predictions(before) == len(SENTENCES)
    info = samples(text, "heldout_model_info", {**model, "task": "sequence-classification", "dtype": "float32"})
    assert info and all(value == 1 for _, value in info), info
    for name in ("request", "queue", "batch"):
        assert total(text, f"heldout_inference_{name}_duration_seconds_count", model) >= 1
    assert 'heldout_inference_queue_depth{model="tiny-sentiment"} 0.0' in text

    with serve(copy_lm_dir) as client:
        client.post("/v1/generate", headers=EVALUATOR, json={"inputs": ["a b c d ="], "max_new_tokens": 8})
        text = client.get("/metrics").text
    assert total(text, "heldout_generated_tokens_total", {"model": "tiny-copy-gpt2"}) >= 4
