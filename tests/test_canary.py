"""Labels never leave the service: sets carry unique canary strings, and every endpoint, error and log line is searched.

Generation references and classification labels are canaries. A classification set's label *names*
are public by design (``labels`` and the audit's ``label_distribution`` of the set's metadata, so
clients know what to predict); they may appear there and nowhere else. Which record has which label,
and any reference text, must appear nowhere: not in any GET endpoint of the OpenAPI document, not in
scoring answers or errors, not in upload errors, not on /metrics, not in the log at DEBUG level.
"""

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from metrics.evaluate_modules import module_path
from service.app import create_app
from service.settings import Settings
from tests.conftest import auth
from tests.fixtures_test_sets import jsonl, upload

pytest_plugins = ["tests.inference_fixtures"]

PREFIX = "zqxcanary"


def canary() -> str:
    return f"{PREFIX}{uuid.uuid4().hex}"


class Crawl:
    """Every response the test sees, kept for the final search."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seen: list[tuple[str, str]] = []

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        self.seen.append((f"{method} {path} -> {response.status_code}", _public_text(response)))
        return response


def _public_text(response: httpx.Response) -> str:
    """The response as text, minus the two metadata fields where label names are public."""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    try:
        body = response.json()
    except ValueError:
        return headers + "\n" + response.text
    return headers + "\n" + json.dumps(_strip_label_names(body))


def _strip_label_names(value: Any) -> Any:
    if isinstance(value, dict):
        if "audit" in value and "labels" in value and "sha256" in value:
            value = {**value, "labels": None, "audit": {**value["audit"], "label_distribution": None}}
        return {k: _strip_label_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_label_names(v) for v in value]
    return value


def _get_paths(client: TestClient, ids: dict[str, list[int]]) -> Iterator[str]:
    """Every GET path of the OpenAPI document, with each path parameter filled by every known id."""
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if "get" not in operations:
            continue
        params = re.findall(r"{(\w+)}", path)
        if not params:
            yield path
            continue
        for value in ids.get(params[0], [1]):
            yield re.sub(r"{\w+}", str(value), path)


def wait_for_evaluations(crawl: Crawl, evaluation_ids: list[int]) -> None:
    for evaluation_id in evaluation_ids:
        deadline = time.monotonic() + 60
        while crawl.call("GET", f"/v1/evaluations/{evaluation_id}", headers=auth("reader")).json()["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def crawl_generation_ratings(crawl: Crawl, ids: dict[str, list[int]], record_ids: list[str]) -> None:
    """A generator's evaluation of the generation set: its outputs paged to raters, ratings posted (good,
    unknown and out of scale), agreement asked for, then every GET path again."""
    response = crawl.call(
        "POST", "/v1/evaluations", headers=auth("evaluator"), json={"test_set": "gen", "max_new_tokens": 4}
    )
    assert response.status_code == 202, response.text
    evaluation_id = response.json()["id"]
    ids["evaluation_id"].append(evaluation_id)
    wait_for_evaluations(crawl, [evaluation_id])
    cursor: int | None = 0
    while cursor is not None:
        page = crawl.call(
            "GET", f"/v1/evaluations/{evaluation_id}/outputs?cursor={cursor}&limit=7", headers=auth("evaluator")
        )
        assert page.status_code == 200, page.text
        cursor = page.json()["next_cursor"]
    ratings = [{"id": record_id, "rater": "r1", "rating": 1 + i % 5} for i, record_id in enumerate(record_ids)]
    for items in (ratings, [{"id": "g-unknown", "rater": "r1", "rating": 3}], [{**ratings[0], "rating": 9}]):
        crawl.call("POST", f"/v1/evaluations/{evaluation_id}/ratings", headers=auth("evaluator"), json={"items": items})
    for test_set_id in ids["test_set_id"]:
        crawl.call("GET", f"/v1/test-sets/{test_set_id}/agreement", headers=auth("evaluator"))
    for path in _get_paths(crawl.client, ids):
        for role in ("reader", "admin"):
            crawl.call("GET", path, headers=auth(role))
    crawl.call("GET", "/metrics")


def test_no_label_or_reference_leaves_the_service(
    database_url: str,
    make_settings: Callable[..., Settings],
    classifier_dir: Path,
    copy_lm_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    labels = [canary() for _ in range(3)]
    classification = [{"id": f"c{i}", "text": f"text {i}", "label": labels[i % 3]} for i in range(30)]
    multilabel = [
        {"id": f"m{i}", "text": f"tags {i}", "label": [labels[i % 3], labels[(i + 1) % 3]]} for i in range(20)
    ]
    references = {f"g{i}": [canary(), canary()] for i in range(20)}
    generation = [{"id": k, "source": f"source {k}", "references": v} for k, v in references.items()]
    secrets = labels + [r for refs in references.values() for r in refs]

    settings = make_settings(
        scoring_resamples=50,
        database_url=database_url,
        model_path=classifier_dir,
        evaluation_shard_size=8,
        evaluation_poll_s=0.05,
        evaluate_modules=module_path("heldout_accuracy"),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        crawl = Crawl(client)
        ids: dict[str, list[int]] = {"test_set_id": [], "evaluation_id": []}
        for name, rows, task, extra in [
            ("cls", classification, "classification", {"ladder": "true", "daily_budget": "3"}),
            ("multi", multilabel, "classification", {}),
            ("gen", generation, "generation", {"ladder": "true"}),
        ]:
            data = {"name": name, "task": task, **extra}
            response = crawl.call(
                "POST", "/v1/test-sets", headers=auth("admin"), data=data, files={"file": ("s.jsonl", jsonl(rows))}
            )
            assert response.status_code == 201, response.text
            ids["test_set_id"].append(response.json()["id"])
        cls_id, multi_id, gen_id = ids["test_set_id"]

        # Upload errors on lines holding canaries.
        bad_lines = [
            {"id": "b1", "text": "t", "label": {"nested": labels[0]}},
            {"id": "b2", "text": "t", "label": [labels[1], 2.5]},
            {"id": "b3", "text": labels[2]},
        ]
        for rows, task in [
            (bad_lines, "classification"),
            ([{"id": 1, "source": "s", "references": [secrets[-1], 3]}], "generation"),
        ]:
            response = crawl.call(
                "POST",
                "/v1/test-sets",
                headers=auth("admin"),
                data={"name": "bad", "task": task},
                files={"file": ("s.jsonl", jsonl(rows) + b'{"id": "x", ' + secrets[-2].encode() + b"\n")},
            )
            assert response.status_code == 422
        training = jsonl([{"text": secrets[3]}, {"source": secrets[4]}])
        upload(client, jsonl(classification), name="cls", extra_files={"training_file": ("t.jsonl", training)})

        # Scoring: right, wrong, guessed-canary and malformed predictions, into the budget and past it.
        submissions = [
            {r["id"]: r["label"] for r in classification},
            {r["id"]: labels[0] for r in classification},
            {r["id"]: "not-a-label" for r in classification},
            {"c0": labels[1]},
            {r["id"]: [labels[0]] for r in classification},
        ]
        for predictions in submissions + submissions[:2]:
            crawl.call(
                "POST", f"/v1/test-sets/{cls_id}/scores", headers=auth("evaluator"), json={"predictions": predictions}
            )
        crawl.call(
            "POST",
            f"/v1/test-sets/{multi_id}/scores",
            headers=auth("evaluator"),
            json={"predictions": {r["id"]: r["label"] for r in multilabel}},
        )
        crawl.call(
            "POST",
            f"/v1/test-sets/{multi_id}/scores",
            headers=auth("evaluator"),
            json={"predictions": {r["id"]: labels[0] for r in multilabel}},
        )
        for hypotheses in ({k: v[0] for k, v in references.items()}, {k: "x" for k in references}, {"g0": 1}):
            crawl.call(
                "POST", f"/v1/test-sets/{gen_id}/scores", headers=auth("evaluator"), json={"predictions": hypotheses}
            )

        # Evaluation jobs of the served classifier: results, failures, comparisons.
        for body in (
            {"test_set": "cls", "extra_metrics": [module_path("heldout_accuracy")]},
            {"test_set": "cls", "metrics": ["f1"]},
            {"test_set": "multi"},
            {"test_set": "gen"},
        ):
            response = crawl.call("POST", "/v1/evaluations", headers=auth("evaluator"), json=body)
            if response.status_code == 202:
                ids["evaluation_id"].append(response.json()["id"])
        wait_for_evaluations(crawl, ids["evaluation_id"])
        assert len(ids["evaluation_id"]) == 2  # the multilabel and generation sets do not fit the classifier
        first, second = ids["evaluation_id"]
        assert crawl.call("GET", f"/v1/evaluations/{first}", headers=auth("reader")).json()["status"] == "succeeded"
        for pair in ({"baseline": first, "candidate": second}, {"baseline": first, "candidate": first}):
            crawl.call("POST", "/v1/evaluations/compare", headers=auth("evaluator"), json=pair)

        for path in _get_paths(client, ids):
            for role in ("reader", "admin"):
                crawl.call("GET", path, headers=auth(role))
        crawl.call("GET", "/metrics")
        crawl.call("DELETE", f"/v1/test-sets/{cls_id}", headers=auth("admin"))
        crawl.call("GET", f"/v1/test-sets/{cls_id}", headers=auth("reader"))

    with TestClient(
        create_app(settings.model_copy(update={"model_path": copy_lm_dir})), raise_server_exceptions=False
    ) as client:
        crawl.client = client
        crawl_generation_ratings(crawl, ids, list(references))

    assert len(crawl.seen) > 30
    for where, text in crawl.seen:
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{where} leaks {leaked}"
        assert PREFIX not in text, where
    log_text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert PREFIX not in log_text
