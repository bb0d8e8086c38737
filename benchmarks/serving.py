"""Serving benchmark: the demo MiniLM classifier, heldout's dynamic batching against two references.

* offline limit: the same model's best batched tokenize+forward throughput on the same sentences
  (length-sorted batches; the best batch size, the better of one stream of forward passes on all
  torch threads or two streams on half the threads each, and the better of the model as transformers
  loads it or with heldout's oneDNN packed linear layers), in this process;
* plain FastAPI: a bare endpoint doing one tokenize+forward per request, served by uvicorn, both as a
  ``def`` endpoint (FastAPI runs it in its thread pool, so forwards overlap) and as an ``async def``
  endpoint (forwards run one at a time on the event loop);
* heldout: ``heldout serve --model <demo>``, clients sending one sentence per request, with the choices
  its autotuner made at start (read back from ``heldout_inference_config_info``); also, at the top load
  level only, with the other linear kernel forced by ``HELDOUT_PACKED_LINEAR``, to show what the choice
  is worth.

Clients are keep-alive connections driven by a minimal asyncio HTTP/1.1 client, so the load generator
costs little CPU next to the server. All servers get the same number of torch threads as the offline
measurement. This machine's speed drifts by tens of percent within a minute, so ratios are taken within
each round between neighbouring measurements (the offline limit just before and just after heldout's
top load level; the plain servers right after it), and the verdicts use the median ratio over rounds.
With ``--device cuda`` every model runs on the GPU in the dtype heldout picks there (bfloat16 where
supported); the offline limit then has one stream, stock linear layers and wider batches, and there is no
other kernel to force.
Usage: ``python -m benchmarks.serving [--duration 15] [--concurrency 1,8,64] [--device cuda]``.
"""

import argparse
import asyncio
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from benchmarks.harness import free_port, percentile, raw_post, round_ratios, row
from benchmarks.machine import describe
from service.inference.demo import ensure_demo_model
from service.inference.demo_data import TEST_SET_FILE
from service.inference.device import resolve_dtype
from service.inference.packed_linear import pack_linears

API_KEY = "benchmark-evaluator-key"
BATCH_SIZES = (8, 16, 32, 64)
GPU_BATCH_SIZES = (16, 64, 128, 256)


@dataclass
class Load:
    name: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float
    """Server CPU time per sentence (all its threads), which contention from other processes barely moves."""


def load_model(model_dir: Path, packed: bool = False, device: str = "cpu") -> tuple[object, torch.nn.Module]:
    """The model as transformers loads it, or with heldout's packed linear layers; on a GPU, in the dtype
    heldout loads it in there."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    target = torch.device(device)
    dtype = resolve_dtype("auto", target)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
    model = model.to(target).eval()
    if packed and not pack_linears(model):
        raise RuntimeError("oneDNN packed linear layers are not available here")
    return tokenizer, model


def forward(tokenizer: object, model: torch.nn.Module, texts: list[str]) -> torch.Tensor:
    with torch.inference_mode():
        encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")  # type: ignore[operator]
        return torch.softmax(model(**encoded.to(model.device)).logits, -1).cpu()


@dataclass
class Limit:
    throughput: float
    batch_size: int
    streams: int
    cpu_ms: float
    packed: bool

    def describe(self) -> str:
        streams = f"{self.streams} stream{'s' if self.streams > 1 else ''}"
        return f"batch {self.batch_size}, {streams}, {'packed' if self.packed else 'stock'} linear"


def _stream(tokenizer: object, model: torch.nn.Module, batches: list[list[str]], threads: int, until: float) -> int:
    """Forward batches in turn until ``until``, on ``threads`` intra-op threads (set per calling thread)."""
    torch.set_num_threads(threads)
    done = 0
    for batch in itertools.cycle(batches):
        forward(tokenizer, model, batch)
        done += len(batch)
        if time.perf_counter() >= until:
            return done
    return done


Models = dict[bool, tuple[object, torch.nn.Module]]
"""The model loaded once each way, keyed by whether its linear layers are packed."""


def offline_limit(models: Models, texts: list[str], seconds: float, threads: int, only: Limit | None = None) -> Limit:
    """Best sentences/s over batch sizes, thread layouts and linear kernels, batches cut from the length-sorted
    sentences.

    Layouts: one stream of forward passes on all ``threads``, and (with two or more threads) two streams
    side by side on half the threads each, so the limit is the best this model does on this CPU either way.
    ``only`` re-measures one configuration found before.
    """
    ordered = sorted(texts, key=len)
    cpu = models[False][1].device.type == "cpu"
    layouts = [1, 2] if threads >= 2 and cpu else [1]
    sizes = BATCH_SIZES if cpu else GPU_BATCH_SIZES
    configs = (
        [(only.batch_size, only.streams, only.packed)]
        if only
        else [(size, n, packed) for packed in models for size in sizes for n in layouts]
    )
    best = Limit(0.0, 0, 1, 0.0, False)
    for size, streams, packed in configs:
        tokenizer, model = models[packed]
        batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        forward(tokenizer, model, batches[0])
        shares = [batches[k::streams] for k in range(streams)]
        start, cpu = time.perf_counter(), time.process_time()
        run = functools.partial(_stream, tokenizer, model, threads=threads // streams, until=start + seconds)
        with ThreadPoolExecutor(streams) as pool:
            done = sum(pool.map(run, shares))
        throughput = done / (time.perf_counter() - start)
        if throughput > best.throughput:
            best = Limit(throughput, size, streams, (time.process_time() - cpu) * 1000 / done, packed)
    torch.set_num_threads(threads)
    return best


def single_forward_ms(models: Models, texts: list[str], packed: bool, count: int = 60) -> float:
    """p50 latency of one sentence's tokenize+forward, the floor for a request at concurrency 1."""
    tokenizer, model = models[packed]
    forward(tokenizer, model, texts[:1])
    timings = []
    for text in texts[:count]:
        start = time.perf_counter()
        forward(tokenizer, model, [text])
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _client(
    port: int, requests: list[bytes], offset: int, until: float, done: list[tuple[float, float, int]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    while (start := time.perf_counter()) < until:
        writer.write(requests[i % len(requests)])
        i += 1
        status = await _read_response(reader)
        done.append((start, time.perf_counter(), status))
    writer.close()


def server_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a server process (Linux), to compare CPU cost per sentence."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, pid: int, requests: list[bytes], concurrency: int, warmup: float, seconds: float) -> Load:
    """Throughput counts requests completed inside the measured window; latencies are theirs."""
    done: list[tuple[float, float, int]] = []
    now = time.perf_counter()
    warm_until, until = now + warmup, now + warmup + seconds
    cpu_before = server_cpu_seconds(pid)
    await asyncio.gather(*(_client(port, requests, i * 7, until, done) for i in range(concurrency)))
    cpu_ms = (server_cpu_seconds(pid) - cpu_before) * 1000 / max(1, len(done))
    window = [(end - start, status) for start, end, status in done if warm_until <= end <= until]
    ms = [latency * 1000 for latency, _ in window]
    errors = sum(status != 200 for _, status in window)
    return Load("", concurrency, len(window) / seconds, percentile(ms, 0.5), percentile(ms, 0.99), errors, cpu_ms)


def http_requests(texts: list[str], path: str) -> list[bytes]:
    return [raw_post(path, {"inputs": [text]}, API_KEY) for text in texts]


def autotuned(port: int) -> dict[str, object]:
    """The serving choices a heldout server made at start, from its ``heldout_inference_config_info``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    info = next(f for f in text_string_to_metric_families(text) if f.name == "heldout_inference_config_info")
    labels = info.samples[0].labels
    return {
        "packed_linear": labels["packed_linear"] == "true",
        "lanes": int(labels["lanes"]),
        "threads_per_lane": int(labels["threads_per_lane"]),
        "max_batch_size": int(labels["max_batch_size"]),
        "wide_lone_batches": labels["wide_lone_batches"] == "true",
        "chosen_by": labels["chosen_by"],
    }


def start(command: list[str], env: dict[str, str], port: int, ready_path: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("server did not become ready")


def plain_server(model_dir: Path, port: int, threads: int, blocking: bool, device: str) -> None:
    """The reference: a bare FastAPI endpoint doing one forward per request."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    torch.set_num_threads(threads)
    tokenizer, model = load_model(model_dir, device=device)
    app = FastAPI()

    class Body(BaseModel):
        inputs: list[str]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def predict(body: Body) -> dict[str, list[float]]:
        return {"scores": forward(tokenizer, model, body.inputs)[0].tolist()}

    async def predict_on_loop(body: Body) -> dict[str, list[float]]:
        return predict(body)

    app.post("/v1/predict")(predict_on_loop if blocking else predict)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]


def measure(server: Server, requests: list[bytes], concurrency: int, seconds: float) -> Load:
    warmup = min(2.0, seconds / 4)
    load = asyncio.run(_drive(server.port, server.process.pid, requests, concurrency, warmup, seconds))
    load.name = server.name
    print(
        f"  {server.name} c={concurrency}: {load.throughput:.1f}/s, p50 {load.p50_ms:.1f} ms, cpu {load.cpu_ms:.1f} ms"
    )
    return load


def median_load(loads: list[Load]) -> Load:
    return Load(
        loads[0].name,
        loads[0].concurrency,
        statistics.median(load.throughput for load in loads),
        statistics.median(load.p50_ms for load in loads),
        statistics.median(load.p99_ms for load in loads),
        sum(load.errors for load in loads),
        statistics.median(load.cpu_ms for load in loads),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HELDOUT_DATA_DIR", ".heldout")))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per load level and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--inputs", type=int, default=512, help="distinct test sentences cycled through")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every model runs")
    parser.add_argument("--plain-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--async-def", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = ensure_demo_model(args.data_dir)
    if args.plain_server:
        plain_server(model_dir, args.plain_server, args.threads, args.async_def, args.device)
        return
    torch.set_num_threads(args.threads)
    kernels = (False, True) if args.device == "cpu" else (False,)
    models: Models = {packed: load_model(model_dir, packed, args.device) for packed in kernels}
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = (model_dir / TEST_SET_FILE).read_text().splitlines()[: args.inputs]
    texts = [json.loads(row)["text"] for row in rows]
    requests = http_requests(texts, "/v1/predict")
    print(describe(args.threads))
    if args.device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name(args.device)}, CUDA {torch.version.cuda}")
    print(f"{len(texts)} sentences", flush=True)

    with TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": scratch,
            "HELDOUT_API_KEYS": f"evaluator:{API_KEY}",
            "HELDOUT_TORCH_THREADS": str(args.threads),
            "HELDOUT_LOG_LEVEL": "warning",
            "HELDOUT_DEVICE": args.device,
        }
        env.pop("HELDOUT_DATABASE_URL", None)
        servers = []
        port = free_port()
        command = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--port"]
        servers = [Server("heldout", port, start([*command, str(port)], env, port, "/readyz"))]
        choices = autotuned(port)
        print(f"heldout's autotuner chose: {choices}", flush=True)
        if args.device == "cpu":
            other = str(not choices["packed_linear"]).lower()
            port = free_port()
            process = start([*command, str(port)], {**env, "HELDOUT_PACKED_LINEAR": other}, port, "/readyz")
            servers.append(Server(f"heldout, HELDOUT_PACKED_LINEAR={other}", port, process))
        for name, flags in (("plain FastAPI, def", []), ("plain FastAPI, async def", ["--async-def"])):
            port = free_port()
            command = [sys.executable, "-m", "benchmarks.serving", "--data-dir", str(args.data_dir)]
            command += ["--threads", str(args.threads), "--device", args.device]
            servers.append(
                Server(name, port, start([*command, *flags, "--plain-server", str(port)], env, port, "/healthz"))
            )
        limits: list[Limit] = []
        singles: dict[bool, list[float]] = {packed: [] for packed in models}
        loads: dict[tuple[str, int], list[Load]] = {}
        ratios: list[tuple[float, float]] = []
        heldout = servers[0]
        other_kernel = [server for server in servers if server.name.startswith("heldout, ")]
        plains = [server for server in servers if server.name.startswith("plain")]

        def measured(server: Server, concurrency: int) -> Load:
            load = measure(server, requests, concurrency, args.duration)
            loads.setdefault((server.name, concurrency), []).append(load)
            return load

        try:
            for round_ in range(args.rounds):
                # The machine's speed drifts, so every comparison is made within a round, between neighbours.
                print(f"round {round_ + 1}/{args.rounds}, load average {os.getloadavg()}", flush=True)
                for packed, series in singles.items():
                    series.append(single_forward_ms(models, texts, packed))
                forwards = ", ".join(f"{'packed' if k else 'stock'} {v[-1]:.1f} ms" for k, v in singles.items())
                print(f"  single forward: {forwards}", flush=True)
                for concurrency in levels[:-1]:
                    measured(heldout, concurrency)
                before = offline_limit(models, texts, args.duration / 4, args.threads)
                top = measured(heldout, levels[-1])
                after = offline_limit(models, texts, args.duration / 2, args.threads, only=before)
                limits.append(replace(before, throughput=(before.throughput + after.throughput) / 2))
                print(f"  offline {before} before, {after.throughput:.1f}/s after", flush=True)
                for server in other_kernel:
                    measured(server, levels[-1])
                fastest_plain = max(measured(server, levels[-1]).throughput for server in plains)
                ratios.append((top.throughput / limits[-1].throughput, top.throughput / fastest_plain))
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(60)
    limit = Limit(
        statistics.median(limit.throughput for limit in limits),
        statistics.mode(limit.batch_size for limit in limits),
        statistics.mode(limit.streams for limit in limits),
        statistics.median(limit.cpu_ms for limit in limits),
        statistics.mode(limit.packed for limit in limits),
    )
    single_ms = {packed: statistics.median(series) for packed, series in singles.items()}
    report([median_load(series) for series in loads.values()], limit, single_ms, ratios)


def report(loads: list[Load], limit: Limit, single_ms: dict[bool, float], ratios: list[tuple[float, float]]) -> None:
    """Medians over rounds. 'cpu ms' is CPU time per sentence: a contention-proof view of efficiency."""
    print()
    row("server", "clients", "sentences/s", "vs offline limit", "p50 ms", "p99 ms", "cpu ms/sentence", "errors")
    row(*["---"] * 8)
    row(
        f"offline limit ({limit.describe()})",
        "-",
        f"{limit.throughput:.1f}",
        "1.00",
        "-",
        "-",
        f"{limit.cpu_ms:.1f}",
        "-",
    )
    for packed, ms in single_ms.items():
        name = f"single forward, {'packed' if packed else 'stock'} linear"
        row(name, 1, f"{1000 / ms:.1f}", f"{1000 / ms / limit.throughput:.2f}", f"{ms:.1f}", "-", "-", "-")
    for load in loads:
        ratio = load.throughput / limit.throughput
        row(
            load.name,
            load.concurrency,
            f"{load.throughput:.1f}",
            f"{ratio:.2f}",
            f"{load.p50_ms:.1f}",
            f"{load.p99_ms:.1f}",
            f"{load.cpu_ms:.1f}",
            load.errors,
        )
    heldout = [load for load in loads if load.name == "heldout"]
    top, lone = heldout[-1], heldout[0]
    vs_limit, vs_plain = round_ratios(top.concurrency, "offline limit", ratios)
    plain = [load for load in loads if load.name.startswith("plain")]
    print(
        f"offline limit / the faster plain server: {limit.throughput / max(p.throughput for p in plain):.2f}x "
        "(the most any server could gain over it)"
    )
    print(f"CPU per sentence, offline limit / heldout at {top.concurrency} clients: {limit.cpu_ms / top.cpu_ms:.2f}")
    checks = [
        (f"throughput at {top.concurrency} clients >= 0.9x offline limit (median of rounds)", vs_limit >= 0.9),
        (">= 3x the faster plain FastAPI server (median of rounds)", vs_plain >= 3),
        ("p50 at 1 client within 3 ms of the faster single forward", lone.p50_ms - min(single_ms.values()) <= 3.0),
        ("no errors", not any(load.errors for load in heldout)),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    main()
