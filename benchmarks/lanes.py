"""Two lanes as threads of one interpreter, as heldout runs them, or as two processes: what the GIL costs
the lanes, before any HTTP.

Each lane runs on one torch thread with packed linear layers. By default it runs heldout's own decoding
step (``KVBatch``) on the random GPT-2 of benchmarks/llm.py: a prefill of ``--rows`` prompts, then
``--steps`` greedy steps. With ``--classifier DIR`` (a ``save_pretrained`` sequence classifier, such as
the demo's) it runs ``--steps`` forward passes over ``--rows`` sequences of random token ids instead.
Both lanes start together (a barrier) and the arrangement's throughput is both lanes' tokens (or
examples) over the time until the slower finishes. Threads share one model, as heldout's lanes do; each
process loads its own. Arrangements alternate over ``--rounds`` and the verdict is the median ratio.
Usage: ``python -m benchmarks.lanes [--rows 16] [--steps 128] [--rounds 3] [--classifier DIR]``.
"""

import argparse
import multiprocessing
import statistics
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from benchmarks.harness import row
from benchmarks.llm import MODEL_NAME, build_model, load_model
from benchmarks.machine import describe
from service.inference.kv_batch import KVBatch, cache_argument
from service.inference.packed_linear import pack_linears

PROMPT_TOKENS = 40
LANES = 2


def load(model_dir: Path, classifier: bool) -> Any:
    if not classifier:
        return load_model(model_dir, packed=True)[1]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if not pack_linears(model):
        raise RuntimeError("oneDNN packed linear layers are not available here")
    return model


def run_lane(model: Any, classifier: bool, rows: int, steps: int, start: Any) -> float:
    """Seconds for one lane's work, timed from the moment every lane passed ``start``."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(rows)
    ids = torch.randint(0, model.config.vocab_size, (rows, PROMPT_TOKENS), generator=generator)
    mask = torch.ones_like(ids)
    name = None if classifier else cache_argument(model)
    if not classifier and name is None:
        raise RuntimeError("this model's forward takes no cache argument: heldout decodes it with generate")
    with torch.inference_mode():
        start.wait()
        began = time.perf_counter()
        if name is None:
            for _ in range(steps):
                model(input_ids=ids, attention_mask=mask)
        else:
            batch, logits = KVBatch.prefill(model, name, ids, mask)
            for _ in range(steps):
                logits = batch.step(logits.argmax(dim=-1))
    return time.perf_counter() - began


def _process_lane(model_dir: Path, classifier: bool, rows: int, steps: int, start: Any, results: Any) -> None:
    torch.set_num_threads(1)
    results.put(run_lane(load(model_dir, classifier), classifier, rows, steps, start))


def in_threads(model: Any, classifier: bool, rows: int, steps: int) -> float:
    start = threading.Barrier(LANES)
    seconds: list[float] = []
    lanes = [
        threading.Thread(target=lambda: seconds.append(run_lane(model, classifier, rows, steps, start)))
        for _ in range(LANES)
    ]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    return LANES * rows * steps / max(seconds)


def in_processes(model_dir: Path, classifier: bool, rows: int, steps: int) -> float:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(LANES), context.Queue()
    arguments = (model_dir, classifier, rows, steps, start, results)
    lanes = [context.Process(target=_process_lane, args=arguments) for _ in range(LANES)]
    for lane in lanes:
        lane.start()
    seconds = [results.get(timeout=600) for _ in lanes]
    for lane in lanes:
        lane.join()
    return LANES * rows * steps / max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16, help="rows each lane decodes together")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--classifier", type=Path, help="a sequence classifier's directory: forward passes")
    args = parser.parse_args()
    print(describe(1), flush=True)
    classifier = args.classifier is not None
    unit = "examples/s" if classifier else "tokens/s"
    with TemporaryDirectory() as scratch:
        model_dir = args.classifier or build_model(Path(scratch) / MODEL_NAME, args.layers, args.width)
        model = load(model_dir, classifier)
        threads: list[float] = []
        processes: list[float] = []
        for round_ in range(args.rounds):
            threads.append(in_threads(model, classifier, args.rows, args.steps))
            processes.append(in_processes(model_dir, classifier, args.rows, args.steps))
            print(f"round {round_ + 1}: threads {threads[-1]:.0f} {unit}, processes {processes[-1]:.0f}", flush=True)
    ratios = [p / t for p, t in zip(processes, threads, strict=True)]
    print()
    row("lanes", f"{unit} (median)", "vs threads")
    row("---", "---", "---")
    row(f"{LANES} threads, one interpreter", f"{statistics.median(threads):.0f}", "1.00")
    row(f"{LANES} processes", f"{statistics.median(processes):.0f}", f"{statistics.median(ratios):.2f}")
    print(f"\nper round, processes / threads: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
