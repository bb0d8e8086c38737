"""ROUGE, exact match and the sentence-level BLEU warning through /v1/metrics/generation and /compare."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rouge_score import rouge_scorer

from metrics.generation import SENTENCE_BLEU_WARNING
from tests.conftest import auth

ROUGE = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
HYPS = ["The cats were running.\nThey ran home", "a dog barks", "Привет мир", "exact"]
REFS = [["the cat runs\nhome they ran", "cats ran"], ["the dog barked loudly"], ["привет мир"], [" exact "]]


def test_generation_endpoint_returns_rouge_score_means_and_exact_match(client: TestClient) -> None:
    for options in ({}, {"rouge_stemmer": True}, {"rouge_tokenize": "whitespace", "lowercase": True}):
        body = {"hypotheses": HYPS, "references": REFS, "metrics": [*ROUGE, "exact_match"], "n_resamples": 100}
        response = client.post("/v1/metrics/generation", headers=auth("evaluator"), json={**body, **options})
        assert response.status_code == 200, response.text
        scores = response.json()["scores"]
        if options.get("rouge_tokenize") == "whitespace":
            tokenizer = type("Lower", (), {"tokenize": staticmethod(lambda text: text.lower().split())})()
            scorer = rouge_scorer.RougeScorer(ROUGE, tokenizer=tokenizer)
        else:
            scorer = rouge_scorer.RougeScorer(ROUGE, use_stemmer=bool(options.get("rouge_stemmer")))
        theirs = [scorer.score_multi(refs, hyp) for refs, hyp in zip(REFS, HYPS, strict=True)]
        for name in ROUGE:
            for field, key in (("score", "fmeasure"), ("precision", "precision"), ("recall", "recall")):
                want = 100 * np.mean([getattr(s[name], key) for s in theirs])
                assert scores[name][field] == pytest.approx(want, abs=1e-9), (options, name, field)
            assert scores[name]["interval"]["low"] <= scores[name]["score"] <= scores[name]["interval"]["high"]
        assert scores["exact_match"]["score"] == (50.0 if options.get("lowercase") else 25.0)
        assert response.json()["warnings"] == []


def test_sentence_level_bleu_warns_in_the_response(client: TestClient) -> None:
    body = {"hypotheses": ["the cat sat"], "references": ["the cat sat down"], "n_resamples": 0}
    plain = client.post("/v1/metrics/generation", headers=auth("evaluator"), json=body).json()
    warned = client.post(
        "/v1/metrics/generation",
        headers=auth("evaluator"),
        json={**body, "metrics": ["bleu", "rougeL"], "sentence_level": True},
    ).json()
    assert plain["warnings"] == [] and warned["warnings"] == [SENTENCE_BLEU_WARNING]
    assert warned["scores"]["rougeL"]["sentence_scores"] == [pytest.approx(100 * 2 * 0.75 / 1.75, abs=1e-9)]


def test_compare_runs_paired_tests_on_rouge_and_exact_match(client: TestClient) -> None:
    refs = [f"the {w} sat on the mat near {i}" for i, w in enumerate(["cat", "dog", "cow"] * 40)]
    good = [r.replace("near", "by") for r in refs]
    bad = [" ".join(r.split()[::-1]) for r in refs]
    body = {"task": "generation", "references": refs, "baseline": bad, "candidate": good, "n_resamples": 300}
    response = client.post(
        "/v1/metrics/compare", headers=auth("evaluator"), json={**body, "metrics": ["rougeL", "exact_match"]}
    )
    assert response.status_code == 200, response.text
    rouge_l = response.json()["results"]["rougeL"]
    assert rouge_l["metric"] == "rougeL" and rouge_l["delta"] > 30 and rouge_l["p_value"] < 0.01
    assert response.json()["results"]["exact_match"]["delta"] == 0.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"rouge_tokenize": "whitespace", "rouge_stemmer": True}, "rouge_stemmer"),
        ({"rouge_tokenize": "nltk"}, "rouge_tokenize"),
        ({"metrics": ["rouge3"]}, "metrics.0"),
    ],
)
def test_bad_rouge_options_are_422_naming_the_field(client: TestClient, options: dict[str, object], field: str) -> None:
    body = {"hypotheses": ["a"], "references": ["a"], "metrics": ["rougeL"], **options}
    response = client.post("/v1/metrics/generation", headers=auth("evaluator"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field
