"""Evaluation benchmarks: job throughput against the offline forward pass, and a 1 GB upload's memory.

``speed``: the demo MiniLM classifier on CPU. The offline reference tokenizes and runs the model
over the set in length-sorted batches of the service's batch size (the best an offline script does),
in this process, with the same oneDNN packed linear layers the service uses, so the ratio measures
the job's own overhead rather than the kernels. The evaluation job is the real path: the set
uploaded to an in-process app serving the same model with the same torch threads,
``POST /v1/evaluations``, timed until ``succeeded`` (shard claims, the dynamic batcher, commits,
and the final metrics with bootstrap intervals included). Rounds interleave and medians are
reported; the target is a ratio of at least 0.9.

``upload``: a generated JSONL file (default 1 GiB) streamed to ``heldout serve`` (no model, SQLite)
as a multipart upload; the server's peak RSS (VmHWM) is read before and after, next to a file a
tenth of the size, to show memory does not grow with the file. Files and data are deleted after.

Usage: ``python benchmarks/evaluation.py speed [--rounds 3] [--copies 3]`` and
``python benchmarks/evaluation.py upload [--gib 1]``.
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.app import create_app
from service.inference.demo import ensure_demo_model
from service.inference.demo_data import TEST_SET_FILE
from service.inference.engine import CPU_BATCH_SIZE
from service.inference.packed_linear import pack_linears
from service.settings import Settings

KEYS = {"admin": "bench-admin", "evaluator": "bench-evaluator"}
API_KEYS = ",".join(f"{role}:{key}" for role, key in KEYS.items())


def headers(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def offline_seconds(model_dir: Path, texts: list[str], batch_size: int) -> tuple[float, float]:
    """Tokenize + forward over all texts in length-sorted batches, as an offline evaluation script would."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    pack_linears(model)
    ordered = sorted(texts, key=len)
    started, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for start in range(0, len(ordered), batch_size):
            batch = tokenizer(ordered[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            model(**batch).logits.argmax(-1)
    return time.perf_counter() - started, time.process_time() - cpu


def evaluation_seconds(client: TestClient, test_set_id: int) -> tuple[float, float, dict[str, object]]:
    """Wall and process CPU seconds (every thread of the app: worker, batcher, database, log) of one job."""
    started, cpu = time.perf_counter(), time.process_time()
    created = client.post("/v1/evaluations", headers=headers("evaluator"), json={"test_set": test_set_id})
    created.raise_for_status()
    while True:
        body = client.get(f"/v1/evaluations/{created.json()['id']}", headers=headers("evaluator")).json()
        if body["status"] in ("succeeded", "failed"):
            elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
            if body["status"] != "succeeded":
                raise SystemExit(f"evaluation failed: {body['error']}")
            return elapsed, cpu_s, body
        time.sleep(0.2)  # polling costs CPU too; 0.2 s is under 1% of a run


def speed(args: argparse.Namespace) -> None:
    model_dir = ensure_demo_model(Path(args.data_dir))
    rows = [json.loads(line) for line in (model_dir / TEST_SET_FILE).read_text().splitlines()]
    rows = [{**row, "id": f"{copy}-{row['id']}"} for copy in range(args.copies) for row in rows]
    texts = [row["text"] for row in rows]
    torch.set_num_threads(args.threads)
    with TemporaryDirectory() as scratch:
        settings = Settings(
            data_dir=Path(scratch),
            model_path=model_dir,
            api_keys=API_KEYS,
            torch_threads=args.threads,
            metric_workers=1,
            log_level="warning",
        )
        batch_size = settings.max_batch_size or CPU_BATCH_SIZE
        print(f"{len(rows)} sentences, batch size {batch_size}, {args.threads} torch thread(s)")
        offline, jobs, offline_cpu, jobs_cpu = [], [], [], []
        with TestClient(create_app(settings)) as client:
            data = "".join(json.dumps(row) + "\n" for row in rows).encode()
            upload = client.post(
                "/v1/test-sets",
                headers=headers("admin"),
                data={"name": "bench", "task": "classification"},
                files={"file": ("bench.jsonl", data)},
            )
            upload.raise_for_status()
            for round_ in range(args.rounds):
                wall, cpu = offline_seconds(model_dir, texts, batch_size)
                offline.append(wall)
                offline_cpu.append(cpu)
                elapsed, cpu_s, body = evaluation_seconds(client, upload.json()["id"])
                jobs.append(elapsed)
                jobs_cpu.append(cpu_s)
                print(
                    f"round {round_ + 1}: offline {wall:.2f} s ({len(texts) / wall:.0f}/s, CPU {cpu:.2f} s), "
                    f"evaluation job {elapsed:.2f} s ({len(texts) / elapsed:.0f}/s, CPU {cpu_s:.2f} s), "
                    f"accuracy {body['metrics']['accuracy']:.4f}"  # type: ignore[index]
                )
    off, job = statistics.median(offline), statistics.median(jobs)
    print(f"median: offline {len(texts) / off:.0f} sentences/s, evaluation job {len(texts) / job:.0f} sentences/s")
    print(f"evaluation job / offline throughput, wall clock: {off / job:.2f} (target >= 0.9)")
    print(f"same ratio from process CPU time: {statistics.median(offline_cpu) / statistics.median(jobs_cpu):.2f}")


def write_jsonl(path: Path, size_bytes: int) -> int:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    records = 0
    with path.open("w") as handle:
        written = 0
        while written < size_bytes:
            text = " ".join(rng.choices(words, k=rng.randrange(10, 60)))
            line = json.dumps({"id": f"r{records}", "text": text, "label": rng.choice(["pos", "neg", "neu"])}) + "\n"
            handle.write(line)
            written += len(line)
            records += 1
    return records


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upload_one(url: str, path: Path, name: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    with path.open("rb") as handle:
        response = httpx.post(
            f"{url}/v1/test-sets",
            headers=headers("admin"),
            data={"name": name, "task": "classification"},
            files={"file": (path.name, handle, "application/x-ndjson")},
            timeout=None,
        )
    response.raise_for_status()
    return time.perf_counter() - started, response.json()


def upload(args: argparse.Namespace) -> None:
    with TemporaryDirectory(dir=args.tmp) as scratch:
        root = Path(scratch)
        port = free_port()
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": str(root / "data"),
            "HELDOUT_API_KEYS": API_KEYS,
            "HELDOUT_DEMO_MODEL": "false",
            "HELDOUT_LOG_LEVEL": "warning",
            "TMPDIR": str(root),
        }
        env.pop("HELDOUT_MODEL_PATH", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            print(f"server ready, peak RSS {peak_rss_mib(server.pid):.0f} MiB")
            for fraction in (0.1, 1.0):
                size = int(args.gib * fraction * 1024**3)
                path = root / f"upload-{fraction}.jsonl"
                records = write_jsonl(path, size)
                elapsed, body = upload_one(url, path, f"big-{fraction}")
                path.unlink()
                print(
                    f"{size / 1024**2:.0f} MiB, {records} records: stored as v{body['version']} in {elapsed:.0f} s "
                    f"({size / 1024**2 / elapsed:.1f} MiB/s); server peak RSS so far {peak_rss_mib(server.pid):.0f} MiB"
                )
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_speed = commands.add_parser("speed")
    run_speed.add_argument("--data-dir", default=".heldout", help="where the demo model is (built if absent)")
    run_speed.add_argument("--rounds", type=int, default=3)
    run_speed.add_argument("--copies", type=int, default=3, help="the demo's test split repeated this many times")
    run_speed.add_argument("--threads", type=int, default=1)
    run_speed.set_defaults(run=speed)
    run_upload = commands.add_parser("upload")
    run_upload.add_argument("--gib", type=float, default=1.0)
    run_upload.add_argument("--tmp", default="/tmp", help="where the generated file, spool and database go")
    run_upload.set_defaults(run=upload)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
