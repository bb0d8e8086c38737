"""/metrics: bounded route labels, promtool-clean text, correct totals across worker processes."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.live_server import free_port, wait_for
from tests.prometheus_text import PROMTOOL, promtool_check, total

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")


def test_route_label_is_the_template_never_the_raw_path(make_settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings())

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    with TestClient(app) as client:
        before = client.get("/metrics").text
        for i in range(5):
            client.get(f"/items/raw-{i}")
            client.get(f"/unknown/raw-{i}")
        text = client.get("/metrics").text
    assert "raw-" not in text
    template = {"method": "GET", "route": "/items/{item_id}", "status": "200"}
    requests = "heldout_http_requests_total"
    assert total(text, requests, template) - total(before, requests, template) == 5
    assert total(text, requests, {"route": "<unmatched>", "status": "404"}) >= 5
    assert total(text, "heldout_http_request_duration_seconds_count", {"route": "/items/{item_id}"}) >= 5


@needs_promtool
def test_metrics_output_passes_promtool(client: TestClient) -> None:
    client.get("/healthz")
    client.post("/v1/metrics/classification", json={})
    result = promtool_check(client.get("/metrics").text)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HELDOUT_DATA_DIR": str(data_dir),
        "HELDOUT_LOG_LEVEL": "warning",
        "HELDOUT_DEMO_MODEL": "false",  # no model: this test is about the HTTP metrics alone
    }
    env.pop("HELDOUT_API_KEYS", None)
    env.pop("HELDOUT_DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


def test_several_workers_aggregate_and_first_start_prints_one_admin_key(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path, port, workers=2)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", server)
        # A fresh connection per request lets the kernel spread them over both workers.
        for _ in range(40):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert total(text, "heldout_http_requests_total", {"route": "/healthz", "status": "200"}) == 40
        if PROMTOOL:
            result = promtool_check(text)
            assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout
    finally:
        first_output = stop(server)
    assert first_output.count("admin key was created") == 1
    key = first_output.split("shown only this once:")[1].split()[0]

    port = free_port()
    server = start_server(tmp_path, port, workers=1)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", server)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/metrics/classification",
            headers={"Authorization": f"Bearer {key}"},
            json={},
        )
        assert response.status_code == 422
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        # One worker serves its own counts, and the folder was wiped at start: counts begin again.
        assert total(text, "heldout_http_requests_total", {"route": "/healthz", "status": "200"}) == 3
    finally:
        second_output = stop(server)
    assert "admin key was created" not in second_output


def test_serve_help_lists_every_setting() -> None:
    from service.settings import Settings

    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert f"HELDOUT_{name.upper()}" in result.stdout

