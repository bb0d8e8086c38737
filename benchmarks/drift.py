"""Drift check benchmark: a check over 100,000 logged predictions, and serving latency while one runs.

Run from the repository root: python -m benchmarks.drift [--rows 100000] [--seconds 15]

A real ``heldout serve`` (one worker, a tiny BERT classifier, SQLite) gets 100,000 synthetic logged
predictions in the last hour and a 20,000-row reference from three days earlier. Measured:

* check time: from "running" to stored result, in the default worker process, with no other load. The
  first check of a process also starts the worker and imports Evidently (cold); the second shows the
  steady state (warm).
* /v1/predict latency: closed-loop clients, one sentence per request; p99 with no check running, then
  p99 over the requests answered while a third check runs. That check takes longer: the worker runs at
  a lower priority and yields the CPU to serving, by design.

Targets: a warm check within 15 s; p99 during a check within 1.5x of p99 without.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from tests.live_server import free_port, wait_for
from tests.monitoring_fixtures import MODEL, insert_rows, synthetic_rows
from tests.tiny_models import SENTENCES, build_classifier

KEY = "benchmark-evaluator-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CLIENTS = 4
TARGET_CHECK_S = 15.0
TARGET_P99_RATIO = 1.5


def start_server(root: Path, database_url: str, model_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HELDOUT_DATA_DIR": str(root / "data"),
        "HELDOUT_DATABASE_URL": database_url,
        "HELDOUT_MODEL_PATH": str(model_dir),
        "HELDOUT_MODEL_NAME": MODEL,
        "HELDOUT_API_KEYS": f"evaluator:{KEY}",
        "HELDOUT_LOG_LEVEL": "warning",
        "HELDOUT_TORCH_THREADS": "1",
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def run_check(client: httpx.Client, window: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/drift/checks", headers=HEADERS, json=window)
    response.raise_for_status()
    check_id = response.json()["id"]
    while True:
        body: dict[str, Any] = client.get(f"/v1/drift/checks/{check_id}", headers=HEADERS).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)


def seconds_running(check: dict[str, Any]) -> float:
    return (datetime.fromisoformat(check["finished_at"]) - datetime.fromisoformat(check["started_at"])).total_seconds()


class Load:
    """Closed-loop clients posting one sentence per request, recording (finish time, latency)."""

    def __init__(self, base: str) -> None:
        self._base = base
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        with httpx.Client(base_url=self._base, timeout=30) as client:
            i = index
            while not self._stop.is_set():
                began = time.perf_counter()
                client.post("/v1/predict", headers=HEADERS, json={"inputs": [SENTENCES[i % len(SENTENCES)]]})
                with self._lock:
                    self.samples.append((time.monotonic(), time.perf_counter() - began))
                i += CLIENTS

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def p99_between(self, start: float, end: float) -> tuple[float, int]:
        with self._lock:
            latencies = sorted(lat for at, lat in self.samples if start <= at <= end)
        return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="Length of the no-check latency baseline.")
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'heldout.db'}"
        now = datetime.now(UTC)
        print(f"logging {args.rows:,} predictions and a 20,000-row reference ...", flush=True)
        reference_start = now - timedelta(days=3)
        insert_rows(url, root, synthetic_rows(20_000, shifted=False, seed=1, start=reference_start))
        window_start = now - timedelta(hours=1)
        spacing = 3000 / args.rows
        insert_rows(url, root, synthetic_rows(args.rows, shifted=True, seed=2, start=window_start, spacing_s=spacing))
        model_dir = build_classifier(root / "tiny-sentiment", ["negative", "neutral", "positive"])
        base = f"http://127.0.0.1:{free_port()}"
        server = start_server(root, url, model_dir, int(base.rsplit(":", 1)[1]))
        try:
            wait_for(f"{base}/readyz", server, 180)
            with httpx.Client(base_url=base, timeout=60) as client:
                reference = {
                    "from": reference_start.isoformat(),
                    "to": (reference_start + timedelta(hours=1)).isoformat(),
                }
                client.post("/v1/drift/reference", headers=HEADERS, json=reference).raise_for_status()
                window = {"from": window_start.isoformat(), "to": now.isoformat()}
                cold = run_check(client, window)
                warm = run_check(client, window)
                with Load(base) as load:
                    time.sleep(2)  # warm-up requests are not counted
                    idle_start = time.monotonic()
                    time.sleep(args.seconds)
                    idle_p99, idle_n = load.p99_between(idle_start, time.monotonic())
                    busy_start = time.monotonic()
                    loaded = run_check(client, window)
                    busy_p99, busy_n = load.p99_between(busy_start, time.monotonic())
        finally:
            server.terminate()
            server.wait(30)
    for name, check in (("cold", cold), ("warm", warm), ("loaded", loaded)):
        if check["status"] != "succeeded":
            raise SystemExit(f"{name} check failed: {check['error']}")
    warm_s = seconds_running(warm)
    ratio = busy_p99 / idle_p99
    print(f"rows checked: {warm['window']['rows']:,}; dataset drift: {warm['dataset_drift']}")
    print(f"check, cold (worker start + Evidently import): {seconds_running(cold):6.2f} s")
    print(f"check, warm:                                   {warm_s:6.2f} s   target <= {TARGET_CHECK_S:g} s")
    print(f"/v1/predict p99, no check:  {idle_p99 * 1000:7.2f} ms over {idle_n} requests")
    print(f"/v1/predict p99, checking:  {busy_p99 * 1000:7.2f} ms over {busy_n} requests")
    print(f"check under that load:      {seconds_running(loaded):7.2f} s")
    print(f"p99 ratio: {ratio:.2f}   target <= {TARGET_P99_RATIO:g}")
    ok = warm_s <= TARGET_CHECK_S and ratio <= TARGET_P99_RATIO
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
