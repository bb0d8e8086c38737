"""The Grafana dashboard: well-formed, shipped unchanged by the chart, written against the catalog's series,
and answered with data by a real Prometheus scraping a real `heldout serve` after some traffic."""

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import yaml

from tests.deploy_tools import (
    CATALOG,
    CHART_DASHBOARD,
    DASHBOARD,
    SELECTOR,
    Query,
    catalog_series,
    check_promql,
    dashboard,
    dashboard_queries,
    series_in,
    substitute,
    tool,
    unknown_labels,
)
from tests.live_server import free_port, wait_for
from tests.prometheus_text import sample_names

QUERIES = dashboard_queries()
QUERY_IDS = [query.id for query in QUERIES]
# What the issue asks the dashboard to show, as the series that show it.
REQUIRED_SERIES = {
    "request rate and errors": {"heldout_http_requests_total"},
    "HTTP latency": {"heldout_http_request_duration_seconds_bucket"},
    "queue depth and batch size": {"heldout_inference_queue_depth", "heldout_inference_batch_size_sum"},
    "evaluation scores with intervals": {
        "heldout_evaluation_score",
        "heldout_evaluation_score_lower",
        "heldout_evaluation_score_upper",
    },
    "human ratings": {"heldout_human_rating"},
    "online accuracy and F1": {"heldout_online_accuracy", "heldout_online_f1"},
    "estimated (CBPE) accuracy and F1": {"heldout_estimated_accuracy", "heldout_estimated_f1"},
    "calibration, worst slice and generalization gap": {"heldout_evaluation_score", "heldout_generalization_gap"},
    "drift share and per-column scores": {"heldout_drift_share", "heldout_drift_score"},
    "age of the last drift check": {"heldout_drift_check_timestamp_seconds"},
    "model info": {"heldout_model_info"},
    "generation latency, tokens and finish reasons": {
        "heldout_time_to_first_token_seconds_bucket",
        "heldout_time_per_output_token_seconds_bucket",
        "heldout_prompt_tokens_total",
        "heldout_generation_finished_total",
    },
    "explanations by method and their duration": {
        "heldout_explanations_total",
        "heldout_explanation_duration_seconds_bucket",
    },
}
VARIABLE_FILTERS = {"model": 'model=~"$model"', "test_set": 'test_set=~"$test_set"'}
EVALUATOR_KEY = "dashboard-test-evaluator-key"
ADMIN_KEY = "dashboard-test-admin-key"
LABELS = ["negative", "neutral", "positive"]
WORDS = ["good", "bad", "film", "plot", "cast", "dull", "great", "slow", "story", "acting", "fine", "weak"]
JOB_S = 180
STARTUP_S = 120
TRAFFIC_WAVES = 5


def test_chart_ships_the_same_dashboard() -> None:
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes(), "copy dashboards/heldout.json into the chart"


def test_dashboard_json_is_tidy_and_panels_do_not_overlap() -> None:
    data = dashboard()
    assert DASHBOARD.read_text() == json.dumps(data, indent=2) + "\n"
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    used = set().union(*(series_in(query.expr) for query in QUERIES))
    missing = {topic: series - used for topic, series in REQUIRED_SERIES.items() if series - used}
    assert not missing, missing
    latency = [q.expr for q in QUERIES if "heldout_http_request_duration_seconds_bucket" in q.expr]
    quantiles = {q for expr in latency for q in re.findall(r"histogram_quantile\(([\d.]+)", expr)}
    assert quantiles == {"0.5", "0.95", "0.99"}


def test_estimated_accuracy_is_shown_beside_realized_online_accuracy() -> None:
    beside = [
        panel
        for panel in dashboard()["panels"]
        if {"heldout_online_accuracy", "heldout_estimated_accuracy"}
        <= set().union(*(series_in(t["expr"]) for t in panel.get("targets", [])))
    ]
    assert len(beside) == 1, "one panel should show realized and estimated accuracy together"


def test_template_variables_select_model_and_test_set() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for name in VARIABLE_FILTERS:
        variable = variables[name]
        match = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?, (\w+)\)", variable["definition"])
        assert match, variable["definition"]
        series, label = match.groups()
        assert label == name and label in CATALOG[series]
        assert variable["includeAll"] and variable["allValue"] == ".*"
    for query in QUERIES:
        for name, matchers in SELECTOR.findall(query.expr):
            labels = CATALOG[catalog_series(name) or name]
            for variable, matcher in VARIABLE_FILTERS.items():
                if variable in labels:
                    assert matcher in matchers, f"{query.id}: {name} is not filtered by ${variable}"


def test_queries_use_catalog_series_and_their_labels() -> None:
    for query in QUERIES:
        unknown_series = {name for name in series_in(query.expr) if catalog_series(name) is None}
        assert not unknown_series, f"{query.id}: {unknown_series} not in DESIGN.md's catalog"
        assert not unknown_labels(query.expr), f"{query.id}: labels {unknown_labels(query.expr)}"


def test_every_query_parses(tmp_path: Path) -> None:
    result = check_promql([substitute(query.expr) for query in QUERIES], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


class Live(NamedTuple):
    prometheus: str
    samples: frozenset[str]


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def start_heldout(tmp: Path, port: int, model: Path) -> subprocess.Popen[str]:
    """`heldout serve` as the image runs it, with a tiny real model mounted."""
    env = {
        **os.environ,
        "HELDOUT_DATA_DIR": str(tmp / f"data-{model.name}"),
        "HELDOUT_MODEL_PATH": str(model),
        "HELDOUT_DEMO_MODEL": "false",
        "HELDOUT_API_KEYS": f"evaluator:{EVALUATOR_KEY},admin:{ADMIN_KEY}",
        "HELDOUT_DRIFT_MIN_ROWS": "20",
        "HELDOUT_MIN_SLICE_SIZE": "10",
        "HELDOUT_METRIC_WORKERS": "1",
        "HELDOUT_TORCH_THREADS": "1",
        "HELDOUT_LOG_LEVEL": "warning",
    }
    for name in ("HELDOUT_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_prometheus(tmp: Path, port: int, targets: list[str]) -> subprocess.Popen[str]:
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "heldout", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    command = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def wait_done(client: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_S
    while True:
        body: dict[str, Any] = client.get(path).json()
        if body["status"] in ("succeeded", "failed"):
            assert body["status"] == "succeeded", body
            return body
        assert time.monotonic() < deadline, f"{path} still {body['status']} after {JOB_S}s"
        time.sleep(0.5)


def exercise_monitoring(client: httpx.Client) -> None:
    """What produces the evaluation, scoring, online, drift and estimate series: a grouped blind test set with a
    labelled training file, an evaluation of the served model on it with the generalization gap (calibration,
    worst slice, gap), a scored submission, feedback on live predictions, and a drift check (CBPE)."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    records = [
        {"id": f"r{i}", "text": text, "label": LABELS[i % 3], "group": "short" if len(text) < 30 else "long"}
        for i, text in enumerate(sentences(40, 1))
    ]
    content = "\n".join(json.dumps(r) for r in records).encode()
    training = "\n".join(json.dumps({"text": t, "label": LABELS[i % 3]}) for i, t in enumerate(sentences(30, 3)))
    upload = client.post(
        "/v1/test-sets",
        headers=admin,
        data={"name": "dashboard-set", "task": "classification"},
        files={
            "file": ("set.jsonl", content, "application/x-ndjson"),
            "training_file": ("train.jsonl", training.encode(), "application/x-ndjson"),
        },
    )
    assert upload.status_code == 201, upload.text
    test_set = upload.json()["id"]
    evaluation = client.post("/v1/evaluations", json={"test_set": test_set, "generalization_gap": True})
    assert evaluation.status_code == 202, evaluation.text
    wait_done(client, f"/v1/evaluations/{evaluation.json()['id']}")
    guesses = {r["id"]: LABELS[0] for r in records}
    assert client.post(f"/v1/test-sets/{test_set}/scores", json={"predictions": guesses}).status_code == 200

    assert client.post("/v1/drift/reference", json={"test_set": test_set}).status_code == 201
    predicted = client.post("/v1/predict", json={"inputs": sentences(40, 2)})
    assert predicted.status_code == 200, predicted.text
    items = [{"prediction_id": p["id"], "label": LABELS[i % 3]} for i, p in enumerate(predicted.json()["predictions"])]
    assert client.post("/v1/feedback", json={"items": items}).status_code == 200
    check = client.post("/v1/drift/checks", json={})
    assert check.status_code == 202, check.text
    wait_done(client, f"/v1/drift/checks/{check.json()['id']}")


def exercise_ratings(gen: httpx.Client) -> None:
    """What produces the human rating series: a generation set, the generator's evaluation of it, ratings."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    records = [{"id": f"g{i}", "source": "a b c d =", "reference": "a b c d"} for i in range(6)]
    content = "\n".join(json.dumps(r) for r in records).encode()
    upload = gen.post(
        "/v1/test-sets",
        headers=admin,
        data={"name": "dashboard-generation", "task": "generation"},
        files={"file": ("set.jsonl", content, "application/x-ndjson")},
    )
    assert upload.status_code == 201, upload.text
    evaluation = gen.post("/v1/evaluations", json={"test_set": upload.json()["id"], "max_new_tokens": 4})
    assert evaluation.status_code == 202, evaluation.text
    evaluation_id = evaluation.json()["id"]
    wait_done(gen, f"/v1/evaluations/{evaluation_id}")
    outputs = gen.get(f"/v1/evaluations/{evaluation_id}/outputs").json()["items"]
    items = [{"id": item["id"], "rater": rater, "rating": 4} for item in outputs for rater in ("a", "b")]
    assert gen.post(f"/v1/evaluations/{evaluation_id}/ratings", json={"items": items}).status_code == 200


def send_traffic(base: str, generator: str) -> None:
    """Waves more than a scrape apart, so every counter and histogram has a rate: successes, 4xx, inference
    (a completion, whole and streamed, on the generator); then the monitoring and rating paths once."""
    auth = {"Authorization": f"Bearer {EVALUATOR_KEY}"}
    texts = ["the film is a delight from start to finish", "a dull and lifeless script sinks the cast"]
    completion = {"model": "tiny-copy-gpt2", "prompt": "a b c d =", "max_tokens": 6, "temperature": 0}
    with httpx.Client(base_url=base, timeout=60) as client, httpx.Client(base_url=generator, timeout=60) as gen:
        for _ in range(TRAFFIC_WAVES):
            assert gen.post("/v1/completions", headers=auth, json=completion).status_code == 200
            streamed = gen.post("/v1/completions", headers=auth, json={**completion, "stream": True})
            assert streamed.text.endswith("data: [DONE]\n\n"), streamed.text
            client.get("/healthz")
            client.post("/v1/predict", headers=auth, json={"inputs": texts})
            client.post("/v1/explain", headers=auth, json={"inputs": texts, "method": "occlusion"})
            client.post("/v1/metrics/classification", headers=auth, json={"predictions": [0, 1], "references": [0, 0]})
            client.post("/v1/metrics/classification", headers=auth, json={})
            client.get("/v1/models")
            client.get("/no-such-route")
            time.sleep(1.2)
    with httpx.Client(base_url=base, timeout=60, headers=auth) as client:
        exercise_monitoring(client)
    with httpx.Client(base_url=generator, timeout=60, headers=auth) as gen:
        exercise_ratings(gen)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", response
    result: list[dict[str, Any]] = response["data"]["result"]
    return result


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Prometheus scraping heldout every second, after traffic and one scrape past its end."""
    from tests.tiny_models import build_classifier, build_copy_lm

    tool("prometheus")
    tmp = tmp_path_factory.mktemp("live")
    heldout_port, generator_port, prometheus_port = free_port(), free_port(), free_port()
    base, prometheus = f"http://127.0.0.1:{heldout_port}", f"http://127.0.0.1:{prometheus_port}"
    generator = f"http://127.0.0.1:{generator_port}"
    heldout = start_heldout(tmp, heldout_port, build_classifier(tmp / "tiny-sentiment", LABELS))
    # A second replica serves a generator, for the generation series.
    generating = start_heldout(tmp, generator_port, build_copy_lm(tmp / "tiny-copy-gpt2"))
    try:
        wait_for(f"{base}/readyz", heldout, STARTUP_S)
        wait_for(f"{generator}/readyz", generating, STARTUP_S)
        targets = [f"127.0.0.1:{heldout_port}", f"127.0.0.1:{generator_port}"]
        server = start_prometheus(tmp, prometheus_port, targets)
        try:
            wait_for(f"{prometheus}/-/ready", server, 30)
            deadline = time.monotonic() + 30
            while len(query(prometheus, 'up{job="heldout"} == 1')) < len(targets):
                assert time.monotonic() < deadline, "Prometheus never scraped heldout"
                time.sleep(0.25)
            send_traffic(base, generator)
            traffic_end = time.time()
            # Both replicas scraped past the traffic's end: the generator's last series are set at its end.
            while len(query(prometheus, f'timestamp(up{{job="heldout"}}) > {traffic_end}')) < len(targets):
                assert time.time() < traffic_end + 30, "no scrape after the traffic"
                time.sleep(0.25)
            texts = [httpx.get(f"{url}/metrics", timeout=10).text for url in (base, generator)]
            yield Live(prometheus, sample_names(texts[0]) | sample_names(texts[1]))
        finally:
            stop(server)
    finally:
        stop(heldout)
        stop(generating)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dashboard_query", QUERIES, ids=QUERY_IDS)
def test_prometheus_answers_every_dashboard_query_with_data(live: Live, dashboard_query: Query) -> None:
    assert live.samples, "heldout's /metrics returned no samples at all"
    missing = sorted(name for name in series_in(dashboard_query.expr) if name not in live.samples)
    assert not missing, (
        f"{dashboard_query.id}: heldout exports no samples of {', '.join(missing)} after send_traffic()"
        " (not implemented yet, or send_traffic() does not yet exercise what produces them)"
    )
    result = query(live.prometheus, substitute(dashboard_query.expr))
    values = [float(series["value"][1]) for series in result]
    assert any(math.isfinite(v) for v in values), f"{dashboard_query.id}: no data from {dashboard_query.expr}"
