"""Human ratings end to end: three tiny generators evaluated on one generation set, their outputs paged
to raters, ratings posted, and the rating summary and metric/human agreement checked against the
krippendorff package, a plain numpy bootstrap and scipy, on SQLite and PostgreSQL."""

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import kendalltau, pearsonr

from metrics import human
from metrics.human import krippendorff_alpha
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, run_evaluation, uploaded
from tests.prometheus_text import sample_value
from tests.tiny_models import COPY_LETTERS

pytest_plugins = ["tests.fixtures_test_sets", "tests.inference_fixtures"]

FAST = {"evaluation_shard_size": 6, "evaluation_poll_s": 0.05, "scoring_resamples": 200}
RATERS = ["ana", "ben", "chi"]
N = 18


def records(seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(N):
        letters = " ".join(rng.choice(COPY_LETTERS) for _ in range(4))
        rows.append({"id": f"q{i}", "source": f"{letters} =", "references": [letters, f"{letters} ."]})
    return rows


def all_outputs(client: TestClient, evaluation_id: int, limit: int) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = client.get(
            f"/v1/evaluations/{evaluation_id}/outputs",
            params={"cursor": cursor, "limit": limit},
            headers=auth("evaluator"),
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == N and all(set(item) == {"id", "source", "output"} for item in body["items"])
        items += body["items"]
        cursor = body["next_cursor"]
    return items


def ratings_for(outputs: list[dict[str, str]], references: dict[str, str], seed: int) -> list[dict[str, Any]]:
    """Raters who like outputs that start like the reference; one skips some outputs."""
    rng = random.Random(seed)
    items = []
    for item in outputs:
        overlap = sum(a == b for a, b in zip(item["output"].split(), references[item["id"]].split(), strict=False))
        for rater in RATERS:
            if rater == "chi" and rng.random() < 0.4:
                continue
            items.append(
                {"id": item["id"], "rater": rater, "rating": min(5, max(1, 1 + overlap + rng.choice([-1, 0, 0, 1])))}
            )
    return items


def post(client: TestClient, evaluation_id: int, items: list[dict[str, Any]]) -> Any:
    return client.post(f"/v1/evaluations/{evaluation_id}/ratings", headers=auth("evaluator"), json={"items": items})


def expected_summary(items: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """The summary from scratch: item means, a numpy bootstrap over items (seed 0), krippendorff.alpha."""
    latest = {(item["id"], item["rater"]): float(item["rating"]) for item in items}
    ids = sorted({key[0] for key in latest}, key=lambda record_id: int(record_id[1:]))  # in set order
    means = np.array([np.mean([r for (i, _), r in latest.items() if i == item_id]) for item_id in ids])
    draws = np.random.default_rng(0).integers(0, len(ids), size=(n_resamples, len(ids)))
    low, high = np.quantile(means[draws].mean(axis=1), [0.025, 0.975])
    raters = sorted({key[1] for key in latest})
    matrix = np.full((len(raters), len(ids)), np.nan)
    for (item_id, rater), rating in latest.items():
        matrix[raters.index(rater), ids.index(item_id)] = rating
    return {
        "n_items": len(ids),
        "n_ratings": len(latest),
        "raters": len(raters),
        "mean": means.mean(),
        "low": low,
        "high": high,
        "alpha": krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval"),
    }


def assert_summary(human_block: dict[str, Any], items: list[dict[str, Any]]) -> None:
    want = expected_summary(items, FAST["scoring_resamples"])
    assert (human_block["n_items"], human_block["n_ratings"], human_block["raters"]) == (
        want["n_items"],
        want["n_ratings"],
        want["raters"],
    )
    assert human_block["mean"] == pytest.approx(want["mean"], abs=1e-12)
    assert human_block["interval"]["low"] == pytest.approx(want["low"], abs=1e-12)
    assert human_block["interval"]["high"] == pytest.approx(want["high"], abs=1e-12)
    assert human_block["krippendorff_alpha"] == pytest.approx(want["alpha"], abs=1e-12)


def test_ratings_and_agreement_end_to_end(
    database_url: str,
    serve: Callable[..., Any],
    copy_lm_dir: Path,
    lora_lm_dir: Path,
    seq2seq_dir: Path,
) -> None:
    rows = records()
    references = {r["id"]: r["references"][0] for r in rows}
    evaluations: list[dict[str, Any]] = []
    posted: list[list[dict[str, Any]]] = []
    for k, model_dir in enumerate((copy_lm_dir, lora_lm_dir, seq2seq_dir)):
        with serve(model_dir, database_url=database_url, **FAST) as client:
            if k == 0:
                test_set = uploaded(client, jsonl(rows), name="copies", task="generation")
                too_few = client.get(f"/v1/test-sets/{test_set['id']}/agreement", headers=auth("evaluator"))
                assert too_few.status_code == 409 and "it has 0" in too_few.json()["detail"]
            result = run_evaluation(client, {"test_set": "copies", "max_new_tokens": 8})
            assert result["status"] == "succeeded", result["error"]
            assert result["human"] is None
            outputs = all_outputs(client, result["id"], limit=5)
            assert [o["id"] for o in outputs] == [r["id"] for r in rows]
            assert [o["source"] for o in outputs] == [r["source"] for r in rows]
            generated = client.post(
                "/v1/generate",
                headers=auth("evaluator"),
                json={"inputs": [r["source"] for r in rows], "max_new_tokens": 8},
            ).json()["outputs"]
            assert [o["output"] for o in outputs] == [g["text"] for g in generated]

            items = ratings_for(outputs, references, seed=k)
            stored = post(client, result["id"], items)
            assert stored.status_code == 200, stored.text
            assert stored.json()["received"] == len(items)
            assert_summary(stored.json()["human"], items)
            # A rater rating an output again replaces the rating.
            again = [{**items[0], "rating": 6 - items[0]["rating"]}]
            replaced = post(client, result["id"], again).json()["human"]
            items += again
            assert_summary(replaced, items)
            info = client.get(f"/v1/evaluations/{result['id']}", headers=auth("reader")).json()
            assert info["human"] == replaced
            metrics_text = client.get("/metrics").text
            labels = {"model": info["model"], "model_version": info["model_version"], "test_set": "copies"}
            assert sample_value(metrics_text, "heldout_human_rating", labels) == pytest.approx(replaced["mean"])
            evaluations.append(info)
            posted.append(items)
            if k == 1:
                two = client.get(f"/v1/test-sets/{test_set['id']}/agreement", headers=auth("evaluator"))
                assert two.status_code == 409 and "it has 2" in two.json()["detail"]
        refused = [
            ({"id": "nope", "rater": "ana", "rating": 3}, "unknown ids: 'nope'"),
            ({"id": "q1", "rater": "ana", "rating": 5.5}, "outside the set's scale [1, 5]"),
            ({"id": "q1", "rater": "ana", "rating": 0}, "outside the set's scale [1, 5]"),
        ]
    with serve(None, database_url=database_url, **FAST) as client:
        for item, message in refused:
            response = post(client, evaluations[0]["id"], [item])
            assert response.status_code == 422 and message in response.json()["detail"], response.text
        agreement = client.get(f"/v1/test-sets/{test_set['id']}/agreement", headers=auth("evaluator"))
        assert agreement.status_code == 200, agreement.text
        body = agreement.json()
        again = client.get(f"/v1/test-sets/{test_set['id']}/agreement", headers=auth("evaluator")).json()
    assert again == body  # seeded
    assert [s["evaluation"] for s in body["systems"]] == [e["id"] for e in evaluations]
    human_means = [e["human"]["mean"] for e in evaluations]
    assert [s["human_mean"] for s in body["systems"]] == pytest.approx(human_means, abs=1e-12)
    assert set(body["metrics"]) == set(evaluations[0]["metrics"])
    for name, found in body["metrics"].items():
        scores = [e["metrics"][name] for e in evaluations]
        assert [s["metrics"][name] for s in body["systems"]] == pytest.approx(scores, abs=1e-9)
        tau, r = kendalltau(scores, human_means).statistic, pearsonr(scores, human_means).statistic
        assert found["kendall_tau"] == pytest.approx(tau, abs=1e-12), name
        assert found["pearson_r"] == pytest.approx(r, abs=1e-12), name
        for interval in (found["kendall_tau_interval"], found["pearson_r_interval"]):
            assert -1 <= interval["low"] <= interval["high"] <= 1, (name, interval)
    assert body["metrics"]["rougeL"]["kendall_tau"] > 0  # the raters like what overlaps the reference


def test_outputs_and_ratings_need_a_succeeded_generation_evaluation(
    serve: Callable[..., Any], copy_lm_dir: Path
) -> None:
    with serve(copy_lm_dir, evaluation_worker=False, **FAST) as client:
        test_set = uploaded(client, jsonl(records()), name="copies", task="generation", rating_scale="[0, 10]")
        queued = client.post("/v1/evaluations", headers=auth("evaluator"), json={"test_set": "copies"}).json()
        outputs = client.get(f"/v1/evaluations/{queued['id']}/outputs", headers=auth("evaluator"))
        assert outputs.status_code == 409 and "queued" in outputs.json()["detail"]
        assert post(client, queued["id"], [{"id": "q0", "rater": "a", "rating": 7}]).status_code == 409
        assert client.get("/v1/evaluations/999/outputs", headers=auth("evaluator")).status_code == 404
        assert client.get(f"/v1/evaluations/{queued['id']}/outputs", headers=auth("reader")).status_code == 403
        malformed = [
            {"items": []},
            {"items": [{"id": "q0", "rater": "a", "rating": "3"}]},
            {"items": [{"id": "q0", "rater": "", "rating": 3}]},
            {"items": [{"id": "q0", "rater": "a", "rating": 3, "extra": 1}]},
        ]
        for body in malformed:
            response = client.post(f"/v1/evaluations/{queued['id']}/ratings", headers=auth("evaluator"), json=body)
            assert response.status_code == 422, body
        assert client.get(f"/v1/test-sets/{test_set['id']}/agreement", headers=auth("reader")).status_code == 403


def test_alpha_is_the_packages_on_random_ratings_with_either_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):
        matrix = rng.integers(0, int(rng.integers(2, 12)), size=(int(rng.integers(1, 6)), int(rng.integers(2, 30))))
        data = matrix.astype(float) / 2
        data[rng.random(data.shape) < 0.35] = np.nan
        rater, item = np.nonzero(~np.isnan(data))
        try:
            want: float | None = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
        except ValueError:  # no item with two ratings, or one value only
            want = None
        want = want if want is not None and np.isfinite(want) else None
        for cells in (human.PACKAGE_CELLS, 0):
            monkeypatch.setattr(human, "PACKAGE_CELLS", cells)
            got = krippendorff_alpha(item, data[rater, item])
            assert (got is None) == (want is None), (trial, got, want)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-12)
