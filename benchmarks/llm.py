"""LLM serving benchmark: a random GPT-2, heldout's streaming /v1/completions against three references.

* offline static ``generate``: the same requests, sorted by max_tokens and cut into static batches (each
  batch runs to its longest request), at the best batch size, the better of the model as transformers
  loads it or with heldout's oneDNN packed linear layers, and the better of one stream of batches on all
  torch threads or two streams side by side on half the threads each (searched once, before the
  rounds), in this process. Only the tokens each request asked for count, so the padding a static batch
  wastes is its own cost;
* plain FastAPI: a bare ``/v1/completions`` calling ``generate`` once per request and sending the whole text
  as one event, served by uvicorn as a ``def`` endpoint (FastAPI's thread pool, generates overlap) and as an
  ``async def`` endpoint (one generate at a time on the event loop);
* a single forward pass over one prompt: the floor for the time to first token at one client.

At the top load level, heldout's engine is also driven in this process with no HTTP in front (the same
streams, as coroutines): a diagnostic row that splits any gap to offline decoding between the engine and
the serving path.

heldout runs as ``heldout serve --model <dir>``. Clients are streaming clients (``stream: true``,
``stream_options.include_usage``) on keep-alive connections, written on plain asyncio as in
benchmarks/serving.py so the load generator costs little of the CPU the server shares, each sending one
request at a time from the same fixed list of prompts (8–48 tokens) with mixed ``max_tokens`` (8–128),
greedy. The model is a randomly initialised GPT-2 built here (no download) whose end-of-text embedding row
is zero, so its logit is 0 and greedy decoding never ends early: every request yields exactly max_tokens,
and a shorter answer counts as an error. So are the rows of tokens that are not printable ASCII (lone UTF-8
bytes, control characters): a random model would emit them, and a streamer rightly holds back an incomplete
character, which would hide every token of such an answer until its end. Throughput is the completion tokens
of requests finished inside the measured window, per second; TTFT is from sending the request to the first
event with text; "client CPU" is what the clients themselves take from the cores the server shares. All
servers get the offline measurement's torch threads.

With ``--device cuda`` every model (heldout's, the references') runs on the GPU in the dtype heldout picks
there (bfloat16 where supported); the offline reference then has one stream and stock linear layers, and
the run also measures transformers' continuous batching (``ContinuousBatchingManager``, each request added
with its own max_new_tokens) offline on the same requests, so the static and continuous paths are compared
on the same model. ``--layers 12 --width 768`` gives GPT-2 small's shape (85M parameters with this
tokenizer's 2,000-token vocabulary).

This machine's speed drifts within a minute, so, as in benchmarks/serving.py, ratios are taken within each
round between neighbouring measurements (offline just before and after heldout's top load level, the plain
servers right after it) and the verdicts use the median over rounds.
Usage: ``python -m benchmarks.llm [--duration 10] [--rounds 3] [--concurrency 1,8,32] [--device cuda]``.
"""

import argparse
import asyncio
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from benchmarks.harness import free_port, percentile, raw_post, round_ratios, row
from benchmarks.machine import describe
from service.inference.device import resolve_dtype
from service.inference.packed_linear import pack_linears

API_KEY = "benchmark-evaluator-key"
COMPLETIONS = "/v1/completions"
IN_PROCESS = "heldout engine in process, no HTTP"
MODEL_NAME = "bench-gpt2"
BATCH_SIZES = (8, 16, 32)
GPU_BATCH_SIZES = (8, 16, 32, 64, 128)
MAX_TOKENS = (8, 128)
PROMPT_WORDS = (8, 48)
SEED = 2024
SYLLABLES = ["ka", "lo", "mi", "tu", "re", "sa", "ne", "po", "di", "fa", "gu", "be", "ch", "an", "or", "el", "is", "um"]


def made_up_words() -> list[str]:
    rng = random.Random(SEED)
    return ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 3))) for _ in range(600)]


def printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def build_model(path: Path, layers: int, width: int) -> Path:
    """A GPT-2 with random weights and a byte-level BPE tokenizer trained on made-up words."""
    rng = random.Random(SEED)
    words = made_up_words()
    corpus = [" ".join(rng.choices(words, k=12)) for _ in range(2000)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    eos = tokenizer.token_to_id("<|endoftext|>")
    positions = PROMPT_WORDS[1] * 4 + MAX_TOKENS[1]
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_embd=width,
        n_layer=layers,
        n_head=max(1, width // 64),
        n_positions=positions,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(config).eval()
    unwanted = [i for i in range(config.vocab_size) if not printable(tokenizer.decode([i], skip_special_tokens=False))]
    with torch.no_grad():
        model.transformer.wte.weight[unwanted] = 0  # tied head: their logits are 0, never the greedy pick
    model.save_pretrained(path)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=positions
    ).save_pretrained(path)
    return path


@dataclass(frozen=True)
class Request:
    prompt: str
    max_tokens: int


def make_requests(count: int) -> list[Request]:
    rng = random.Random(SEED + 1)
    words = made_up_words()
    return [
        Request(" ".join(rng.choices(words, k=rng.randint(*PROMPT_WORDS))), rng.randint(*MAX_TOKENS))
        for _ in range(count)
    ]


Loaded = tuple[PreTrainedTokenizerFast, GPT2LMHeadModel]


def load_model(model_dir: Path, packed: bool = False, device: str = "cpu") -> Loaded:
    """On a GPU, in the dtype heldout loads it in there."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir, padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    target = torch.device(device)
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=resolve_dtype("auto", target)).to(target).eval()
    if packed and not pack_linears(model):
        raise RuntimeError("oneDNN packed linear layers are not available here")
    return tokenizer, model


def generate(loaded: Loaded, prompts: list[str], max_tokens: int) -> torch.Tensor:
    tokenizer, model = loaded
    with torch.inference_mode():
        encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        return model.generate(
            **encoded, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )


@dataclass
class Offline:
    throughput: float
    batch_size: int
    packed: bool
    streams: int

    def describe(self) -> str:
        layout = "1 stream" if self.streams == 1 else f"{self.streams} streams side by side"
        return f"batch {self.batch_size}, {'packed' if self.packed else 'stock'} linear, {layout}"


def offline_static(
    models: dict[bool, Loaded], requests: list[Request], size: int, packed: bool, streams: int, threads: int
) -> Offline:
    """Completion tokens/s of one pass of static batches of ``size`` over the requests sorted by max_tokens,
    run by ``streams`` threads side by side (every other batch each), the torch threads split between them."""
    ordered = sorted(requests, key=lambda r: (r.max_tokens, len(r.prompt)))
    batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    tokenizer, model = models[packed]
    # A fast tokenizer is not to be shared between threads that pad: each stream gets its own.
    loaded = [(copy.deepcopy(tokenizer), model) for _ in range(streams)]

    def warm(stream: int) -> None:
        torch.set_num_threads(max(1, threads // streams))
        generate(loaded[stream], [r.prompt for r in batches[0]], 2)

    def run(stream: int) -> None:
        for batch in batches[stream::streams]:
            generate(loaded[stream], [r.prompt for r in batch], max(r.max_tokens for r in batch))

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(warm, range(streams)))
        synchronize(model)
        start = time.perf_counter()
        list(pool.map(run, range(streams)))
        synchronize(model)
        seconds = time.perf_counter() - start
    return Offline(sum(r.max_tokens for r in requests) / seconds, size, packed, streams)


def synchronize(model: torch.nn.Module) -> None:
    """Waits for a GPU's queued kernels, so a timer read after it counts them."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def best_offline(models: dict[bool, Loaded], requests: list[Request], threads: int) -> Offline:
    """The best batch size, linear kernel and number of streams: searched once (a pass of each takes
    seconds to tens of seconds here). On a GPU, one stream of stock layers over wider batches."""
    best = Offline(0.0, 0, False, 1)
    cpu = models[False][1].device.type == "cpu"
    for streams in sorted({1, min(2, threads)}) if cpu else [1]:
        for packed in models:
            for size in BATCH_SIZES if cpu else GPU_BATCH_SIZES:
                found = offline_static(models, requests, size, packed, streams, threads)
                print(f"  offline {found.describe()}: {found.throughput:.1f} tokens/s", flush=True)
                best = max(best, found, key=lambda o: o.throughput)
    return best


def offline_continuous(loaded: Loaded, requests: list[Request]) -> float:
    """Completion tokens/s of transformers' continuous batching over all the requests at once, each added
    with its own max_new_tokens (the manager is started and warmed up before the clock starts)."""
    tokenizer, model = loaded
    config = GenerationConfig(do_sample=False, max_new_tokens=MAX_TOKENS[1], eos_token_id=-1, pad_token_id=0)
    prompts = [tokenizer(r.prompt).input_ids for r in requests]
    with model.continuous_batching_context_manager(generation_config=config) as manager:
        start = time.perf_counter()
        for i, (prompt, request) in enumerate(zip(prompts, requests, strict=True)):
            manager.add_request(prompt, request_id=f"r{i}", max_new_tokens=request.max_tokens)
        generated, finished = 0, 0
        while finished < len(requests):
            result = manager.get_result(timeout=60)
            if result is None:
                raise RuntimeError(f"continuous batching stopped after {finished} of {len(requests)} requests")
            if result.is_finished():
                finished += 1
                generated += len(result.generated_tokens)
        seconds = time.perf_counter() - start
    return generated / seconds


def single_forward_ms(loaded: Loaded, requests: list[Request], threads: int, count: int = 40) -> float:
    """p50 of one prompt's tokenize + forward pass: what the first token costs with nothing else running."""
    tokenizer, model = loaded
    timings = []
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for request in requests[:count]:
            start = time.perf_counter()
            model(**tokenizer(request.prompt, return_tensors="pt").to(model.device))
            synchronize(model)
            timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings[1:])


@dataclass(frozen=True)
class Done:
    start: float
    first: float
    end: float
    tokens: int
    ok: bool


def body(request: Request) -> dict[str, object]:
    return {
        "model": MODEL_NAME,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def events(lines: list[str]) -> Iterator[dict[str, object]]:
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            yield json.loads(line[5:])


async def _body_parts(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The response body as it arrives: chunk by chunk when chunked, else whole."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    if "transfer-encoding: chunked" not in head:
        length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.startswith("content-length:"))
        yield await reader.readexactly(length)
        return
    while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
        yield (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")


async def stream_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes, request: Request) -> Done:
    """One streaming completion; ok only if its usage says max_tokens were generated."""
    start = time.perf_counter()
    first, tokens, pending = 0.0, -1, b""
    writer.write(raw)
    async for part in _body_parts(reader):
        *complete, pending = (pending + part).split(b"\n\n")
        for event in events([chunk.decode() for chunk in complete]):
            choices = event.get("choices") or []
            if not first and any(choice.get("text") for choice in choices):  # type: ignore[union-attr]
                first = time.perf_counter()
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])  # type: ignore[index]
    end = time.perf_counter()
    return Done(start, first or end, end, tokens, tokens == request.max_tokens)


async def _client(port: int, requests: list[Request], offset: int, until: float, done: list[Done]) -> None:
    """A keep-alive connection sending one request at a time: plain asyncio, so the load generator takes
    little of the CPU the server shares."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = [raw_post(COMPLETIONS, body(request), API_KEY) for request in requests]
    i = offset
    while time.perf_counter() < until:
        done.append(await stream_one(reader, writer, raw[i % len(raw)], requests[i % len(requests)]))
        i += 1
    writer.close()


@dataclass
class Load:
    name: str
    concurrency: int
    throughput: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    errors: int
    client_cpu: float
    """CPU the clients used, in cores: taken from the same machine the server runs on."""


async def _drive(port: int, requests: list[Request], concurrency: int, warmup: float, seconds: float) -> Load:
    """``concurrency`` clients against the server on ``port``, and what the clients' own CPU came to."""
    done: list[Done] = []
    cpu = time.process_time()
    now = time.perf_counter()
    warm_until, until = now + warmup, now + warmup + seconds
    await asyncio.gather(*(_client(port, requests, i * 7, until, done) for i in range(concurrency)))
    client_cpu = (time.process_time() - cpu) / (time.perf_counter() - now)
    return summary("", concurrency, done, warm_until, until, client_cpu)


def summary(name: str, concurrency: int, done: list[Done], warm_until: float, until: float, cpu: float) -> Load:
    """Throughput counts requests finished inside the measured window; TTFTs are theirs."""
    window = [d for d in done if warm_until <= d.end <= until]
    ttft = [(d.first - d.start) * 1000 for d in window if d.ok]
    tokens = sum(d.tokens for d in window if d.ok)
    errors = sum(not d.ok for d in window)
    throughput = tokens / (until - warm_until)
    return Load(name, concurrency, throughput, percentile(ttft, 0.5), percentile(ttft, 0.99), errors, cpu)


class InProcess:
    """heldout's engine in this process, with no HTTP in front: driven by the same streams as the clients',
    it shows how much of the gap to offline decoding is the engine's and how much the serving path's."""

    def __init__(self, model_dir: Path, data_dir: Path, threads: int, device: str) -> None:
        from service.db.migrate import migrate
        from service.db.session import Database
        from service.inference.startup import build_engine
        from service.settings import Settings

        settings = Settings(
            model_path=model_dir, data_dir=data_dir, database_url=None, torch_threads=threads, device=device
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        self._db = Database(settings.resolved_database_url)
        migrate(self._db, data_dir)
        self._runner = asyncio.Runner()  # the engine's batchers belong to the loop they started on
        self._engine = build_engine(settings, self._db)
        self._runner.run(self._engine.start())

    def measure(self, requests: list[Request], concurrency: int, seconds: float) -> Load:
        load = self._runner.run(self._drive(requests, concurrency, min(2.0, seconds / 4), seconds))
        print(
            f"  {load.name} c={concurrency}: {load.throughput:.1f} tokens/s, TTFT p50 {load.ttft_p50_ms:.1f} ms, "
            f"errors {load.errors}",
            flush=True,
        )
        return load

    async def _drive(self, requests: list[Request], concurrency: int, warmup: float, seconds: float) -> Load:
        from service.inference.options import GenerateOptions
        from service.inference.rows import Delta

        done: list[Done] = []
        now = time.perf_counter()
        warm_until, until = now + warmup, now + warmup + seconds

        async def client(offset: int) -> None:
            i = offset
            while (start := time.perf_counter()) < until:
                request = requests[i % len(requests)]
                i += 1
                first, tokens = 0.0, -1
                options = GenerateOptions(max_new_tokens=request.max_tokens, length_field="max_tokens")
                async for event in self._engine.stream([request.prompt], options):
                    if isinstance(event, Delta):
                        first = first or time.perf_counter()
                    else:
                        tokens = sum(out.tokens for out in event.outputs)
                end = time.perf_counter()
                done.append(Done(start, first or end, end, tokens, tokens == request.max_tokens))

        await asyncio.gather(*(client(i * 7) for i in range(concurrency)))
        return summary(IN_PROCESS, concurrency, done, warm_until, until, float("nan"))

    def close(self) -> None:
        self._runner.run(self._engine.aclose())
        self._runner.close()
        self._db.dispose()


def plain_server(model_dir: Path, port: int, threads: int, blocking: bool, device: str) -> None:
    """The reference: a bare FastAPI endpoint doing one ``generate`` per request, its text sent as one event."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    torch.set_num_threads(threads)
    loaded = load_model(model_dir, device=device)
    app = FastAPI()

    class Body(BaseModel):
        prompt: str
        max_tokens: int

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def completions(request: Body) -> StreamingResponse:
        tokenizer = loaded[0]
        sequence = generate(loaded, [request.prompt], request.max_tokens)[0]
        prompt_tokens = len(tokenizer(request.prompt).input_ids)
        text = tokenizer.decode(sequence[prompt_tokens:], skip_special_tokens=True)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(sequence) - prompt_tokens}
        chunks = [{"choices": [{"index": 0, "text": text, "finish_reason": "length"}]}, {"choices": [], "usage": usage}]
        lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
        return StreamingResponse(iter(lines), media_type="text/event-stream")

    async def completions_on_loop(request: Body) -> StreamingResponse:
        return completions(request)

    app.post("/v1/completions")(completions_on_loop if blocking else completions)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{COMPLETIONS}"


def start(name: str, command: list[str], env: dict[str, str], port: int, ready_path: str) -> Server:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                return Server(name, port, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{name} did not become ready")


def check_streams(server: Server, request: Request) -> None:
    """Fail at once, saying what is missing, if the server cannot stream a completion of max_tokens tokens."""
    response = httpx.post(server.url, json=body(request), headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
    if response.status_code != 200:
        raise SystemExit(
            f"{server.name}: POST /v1/completions with stream=true answered {response.status_code}: "
            f"{response.text[:300]}"
        )
    usage = [event["usage"] for event in events(response.text.splitlines()) if event.get("usage")]
    if usage != [usage[0]] or usage[0]["completion_tokens"] != request.max_tokens:  # type: ignore[index]
        raise SystemExit(
            f"{server.name}: expected one usage event with {request.max_tokens} completion tokens, "
            f"got {usage} in {response.text[:300]!r}"
        )


def measure(server: Server, requests: list[Request], concurrency: int, seconds: float) -> Load:
    load = asyncio.run(_drive(server.port, requests, concurrency, min(2.0, seconds / 4), seconds))
    load.name = server.name
    print(
        f"  {server.name} c={concurrency}: {load.throughput:.1f} tokens/s, TTFT p50 {load.ttft_p50_ms:.1f} ms, "
        f"p99 {load.ttft_p99_ms:.1f} ms, errors {load.errors}, client CPU {load.client_cpu:.2f} cores",
        flush=True,
    )
    return load


def median_load(loads: list[Load]) -> Load:
    return Load(
        loads[0].name,
        loads[0].concurrency,
        statistics.median(load.throughput for load in loads),
        statistics.median(load.ttft_p50_ms for load in loads),
        statistics.median(load.ttft_p99_ms for load in loads),
        sum(load.errors for load in loads),
        statistics.median(load.client_cpu for load in loads),
    )


def header(threads: int, layers: int, width: int, requests: list[Request], device: str) -> None:
    print(f"{describe(threads)}, transformers {transformers.__version__}")
    if device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    tokens = sorted(r.max_tokens for r in requests)
    print(
        f"model: GPT-2, {layers} layers, width {width}, random weights; {len(requests)} requests, max_tokens "
        f"{tokens[0]}-{tokens[-1]} (median {statistics.median(tokens):.0f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load level and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=64, help="distinct requests, cycled through")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every model runs")
    parser.add_argument("--plain-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--async-def", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        plain_server(args.model_dir, args.plain_server, args.threads, args.async_def, args.device)
        return
    torch.set_num_threads(args.threads)
    levels = [int(c) for c in args.concurrency.split(",")]
    requests = make_requests(args.requests)
    header(args.threads, args.layers, args.width, requests, args.device)

    with TemporaryDirectory() as scratch:
        model_dir = build_model(Path(scratch) / MODEL_NAME, args.layers, args.width)
        kernels = (False, True) if args.device == "cpu" else (False,)
        models = {packed: load_model(model_dir, packed, args.device) for packed in kernels}
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": str(Path(scratch) / "data"),
            "HELDOUT_API_KEYS": f"evaluator:{API_KEY}",
            "HELDOUT_TORCH_THREADS": str(args.threads),
            "HELDOUT_LOG_LEVEL": "warning",
            "HELDOUT_DEVICE": args.device,
        }
        env.pop("HELDOUT_DATABASE_URL", None)
        servers: list[Server] = []
        in_process: InProcess | None = None
        try:
            port = free_port()
            command = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--port", str(port)]
            servers.append(start("heldout", command, env, port, "/readyz"))
            check_streams(servers[0], requests[0])
            for name, flags in (("plain FastAPI, def", []), ("plain FastAPI, async def", ["--async-def"])):
                port = free_port()
                command = [sys.executable, "-m", "benchmarks.llm", "--threads", str(args.threads)]
                command += ["--model-dir", str(model_dir), "--device", args.device]
                servers.append(start(name, [*command, *flags, "--plain-server", str(port)], env, port, "/healthz"))
                check_streams(servers[-1], requests[0])
            in_process = InProcess(model_dir, Path(scratch) / "in-process", args.threads, args.device)
            run_rounds(args, servers, models, requests, levels, in_process)
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(60)
            if in_process is not None:
                in_process.close()


def run_rounds(
    args: argparse.Namespace,
    servers: list[Server],
    models: dict[bool, Loaded],
    requests: list[Request],
    levels: list[int],
    in_process: InProcess,
) -> None:
    heldout, plains = servers[0], servers[1:]
    offline: list[Offline] = []
    singles: list[float] = []
    loads: dict[tuple[str, int], list[Load]] = {}
    ratios: list[tuple[float, float]] = []
    config = best_offline(models, requests, args.threads)
    continuous = None
    if args.device != "cpu":
        try:
            continuous = offline_continuous(models[False], requests)
            print(f"  transformers continuous batching, offline: {continuous:.1f} tokens/s", flush=True)
        except Exception as exc:  # a reference that fails is reported, and the rest still measured
            print(f"  transformers continuous batching failed: {type(exc).__name__}: {exc}", flush=True)

    def measured(server: Server, concurrency: int) -> Load:
        load = measure(server, requests, concurrency, args.duration)
        loads.setdefault((server.name, concurrency), []).append(load)
        return load

    for round_ in range(args.rounds):
        # The machine's speed drifts, so every comparison is made within a round, between neighbours.
        print(f"round {round_ + 1}/{args.rounds}, load average {os.getloadavg()}", flush=True)
        singles.append(min(single_forward_ms(models[p], requests, t) for p in models for t in {1, args.threads}))
        torch.set_num_threads(args.threads)
        print(f"  single forward {singles[-1]:.1f} ms (the faster linear kernel and thread count)", flush=True)
        for concurrency in levels[:-1]:
            measured(heldout, concurrency)
        before = offline_static(models, requests, config.batch_size, config.packed, config.streams, args.threads)
        top = measured(heldout, levels[-1])
        after = offline_static(models, requests, config.batch_size, config.packed, config.streams, args.threads)
        offline.append(replace(before, throughput=(before.throughput + after.throughput) / 2))
        print(
            f"  offline {before.describe()}: {before.throughput:.1f} before, {after.throughput:.1f} after", flush=True
        )
        engine = in_process.measure(requests, levels[-1], args.duration)
        loads.setdefault((engine.name, engine.concurrency), []).append(engine)
        print(f"  in process / offline static: {engine.throughput / offline[-1].throughput:.2f}", flush=True)
        fastest_plain = max(measured(server, levels[-1]).throughput for server in plains)
        ratios.append((top.throughput / offline[-1].throughput, top.throughput / fastest_plain))
    limit = replace(config, throughput=statistics.median(o.throughput for o in offline))
    loaded = [median_load(series) for series in loads.values()]
    report(loaded, limit, continuous, statistics.median(singles), ratios)


def report(
    loads: list[Load], limit: Offline, continuous: float | None, single_ms: float, ratios: list[tuple[float, float]]
) -> None:
    """Medians over rounds."""
    print()
    row("server", "clients", "tokens/s", "vs offline static", "TTFT p50 ms", "TTFT p99 ms", "client CPU", "errors")
    row(*["---"] * 8)
    row(f"offline static generate ({limit.describe()})", "-", f"{limit.throughput:.1f}", "1.00", *["-"] * 4)
    if continuous is not None:
        ratio = f"{continuous / limit.throughput:.2f}"
        row("offline transformers continuous batching", "-", f"{continuous:.1f}", ratio, *["-"] * 4)
    row("single forward over the prompt", 1, "-", "-", f"{single_ms:.1f}", *["-"] * 3)
    for load in loads:
        row(
            load.name,
            load.concurrency,
            f"{load.throughput:.1f}",
            f"{load.throughput / limit.throughput:.2f}",
            f"{load.ttft_p50_ms:.1f}",
            f"{load.ttft_p99_ms:.1f}",
            "-" if load.name == IN_PROCESS else f"{load.client_cpu:.2f}",
            load.errors,
        )
    heldout = [load for load in loads if load.name == "heldout"]
    top, lone = heldout[-1], heldout[0]
    vs_offline, vs_plain = round_ratios(top.concurrency, "offline static", ratios)
    print(f"TTFT p50 at {lone.concurrency} client minus a single forward: {lone.ttft_p50_ms - single_ms:.1f} ms")
    checks = [
        (
            f"throughput at {top.concurrency} clients >= 0.8x offline static generate (median of rounds)",
            vs_offline >= 0.8,
        ),
        (">= 3x the faster plain FastAPI server (median of rounds)", vs_plain >= 3),
        (f"TTFT p50 at {lone.concurrency} client within 10 ms of a single forward", lone.ttft_p50_ms - single_ms <= 10),
        ("no errors", not any(load.errors for load in loads)),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    main()
