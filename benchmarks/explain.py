"""Explanation benchmark: heldout's /v1/explain on the demo MiniLM classifier against two references.

* captum as its tutorials call it: one sentence per call, the model as transformers loads it, each
  method's defaults (integrated gradients: ``LayerIntegratedGradients`` over the word embeddings with 50
  steps in one batch; LIME, kernel SHAP and feature ablation one perturbation per forward pass), with
  the same baselines, word features and number of samples as heldout;
* shap's Partition explainer (``shap.Explainer``) over a transformers text-classification pipeline
  (batch size 32, every label's score), at its defaults (500 evaluations a sentence).

heldout runs as ``heldout serve`` (a subprocess, the same torch threads as this process) and gets all
sentences in one request per method, without faithfulness scores (the references compute none). Every
method's explanations are scored alike here, by ERASER comprehensiveness: the drop of the target's
probability when the top 10, 20 and 50% of the words (by attribution) are deleted from the text, averaged,
by the plain model. The slow references run on the first ``--peer-sentences`` sentences, and ratios
compare heldout on those same sentences. Last, ``/v1/predict`` latency (one sentence, 20 requests a second)
is measured idle and during a burst of explanation requests.

Usage: ``python -m benchmarks.explain [--sentences 48] [--peer-sentences 8] [--burst-seconds 15]``; the shap
reference needs the ``bench`` extra (``pip install -e '.[bench]'``).
"""

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import torch
from captum.attr import FeatureAblation, KernelShap, LayerIntegratedGradients, Lime
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from service.inference.demo import ensure_demo_model
from service.inference.demo_data import TEST_SET_FILE
from tests.live_server import free_port, wait_for

API_KEY = "benchmark-evaluator-key"
METHODS = ["integrated_gradients", "attention", "lime", "kernel_shap", "occlusion"]
SAMPLES = 200
FRACTIONS = (0.1, 0.2, 0.5)
PREDICT_RATE = 20.0
BURST_CLIENTS = 2
BURST_INPUTS = 16


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)
    """Seconds per explanation, one per sentence (a batched request's time is shared evenly)."""
    words: list[list[float]] = field(default_factory=list)
    """Each sentence's whitespace-word attributions."""


class Plain:
    """The model as transformers loads it: the references' model and the comprehensiveness judge."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
        self.pad = int(self.tokenizer.pad_token_id)

    def probabilities(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(ids) if mask is None else mask
        return torch.softmax(self.model(input_ids=ids, attention_mask=mask).logits, dim=-1)

    def texts_probabilities(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            encoded = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            return self.probabilities(encoded["input_ids"], encoded["attention_mask"])

    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Ids (1 × length), the special-token mask, and each non-special token's whitespace word."""
        enc = self.tokenizer(text, return_tensors="pt", return_special_tokens_mask=True, return_offsets_mapping=True)
        special = enc["special_tokens_mask"].bool()
        starts = [m.start() for m in re.finditer(r"\S+", text)]
        offsets = enc["offset_mapping"][0].tolist()
        word_of = [
            max(0, _bisect(starts, start))
            for (start, _), is_special in zip(offsets, special[0].tolist(), strict=True)
            if not is_special
        ]
        return enc["input_ids"], special, word_of


def _bisect(starts: list[int], position: int) -> int:
    return sum(1 for start in starts if start <= position) - 1


def word_sums(n_words: int, word_of: list[int], values: list[float]) -> list[float]:
    sums = [0.0] * n_words
    for word, value in zip(word_of, values, strict=True):
        sums[word] += value
    return sums


def comprehensiveness(plain: Plain, text: str, words: list[float], target: int) -> float:
    """ERASER's, by deleting words from the text (the references' features need not be heldout's)."""
    tokens = text.split()
    ranked = sorted(range(len(tokens)), key=lambda i: -words[i])
    variants = [text]
    for fraction in FRACTIONS:
        top = set(ranked[: min(len(tokens), max(1, math.ceil(fraction * len(tokens))))])
        variants.append(" ".join(t for i, t in enumerate(tokens) if i not in top))
    p = plain.texts_probabilities(variants)[:, target].tolist()
    return p[0] - statistics.fmean(p[1:])


# ---- the captum references, one sentence per call -------------------------------------------------------


def captum_integrated_gradients(plain: Plain, text: str, target: int) -> tuple[list[float], list[float]]:
    """The BERT tutorial: pad baseline with [CLS] and [SEP] kept, 50 steps in one batch. Returns word and
    token attributions."""
    ids, special, word_of = plain.encode(text)
    baseline = torch.where(special, ids, torch.full_like(ids, plain.pad))
    explainer = LayerIntegratedGradients(plain.probabilities, plain.model.get_input_embeddings())
    attributions = explainer.attribute(ids, baselines=baseline, additional_forward_args=(torch.ones_like(ids),),
                                       target=target, return_convergence_delta=False)
    tokens = attributions.sum(-1)[0][~special[0]].tolist()
    return word_sums(len(text.split()), word_of, tokens), tokens


def _word_features(plain: Plain, text: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any], list[int]]:
    ids, special, word_of = plain.encode(text)
    positions = (~special[0]).nonzero().flatten()

    def forward(content: torch.Tensor) -> torch.Tensor:
        full = ids.expand(len(content), -1).clone()
        full[:, positions] = content.long()
        with torch.no_grad():
            return plain.probabilities(full)

    content = ids[:, positions]
    present = sorted(set(word_of))
    mask = torch.tensor([[present.index(w) for w in word_of]])
    return forward, {"inputs": content, "baselines": torch.full_like(content, plain.pad), "feature_mask": mask}, present


def captum_word_method(name: str) -> Callable[[Plain, str, int], list[float]]:
    def explain(plain: Plain, text: str, target: int) -> list[float]:
        forward, kwargs, present = _word_features(plain, text)
        if name == "occlusion":
            per_token = FeatureAblation(forward).attribute(target=target, **kwargs)[0]
            mask = kwargs["feature_mask"][0]
            coefficients = [float(per_token[(mask == f).nonzero()[0]]) for f in range(len(present))]
        else:
            explainer = Lime(forward) if name == "lime" else KernelShap(forward)
            out = explainer.attribute(target=target, n_samples=SAMPLES, return_input_shape=False, **kwargs)
            coefficients = out.flatten().tolist()
        words = [0.0] * len(text.split())
        for word, value in zip(present, coefficients, strict=True):
            words[word] = value
        return words

    return explain


# ---- shap's Partition explainer ---------------------------------------------------------------------------


def shap_partition(plain: Plain, texts: list[str], targets: list[int]) -> Result:
    import shap
    from transformers import pipeline

    pipe = pipeline("text-classification", model=plain.model, tokenizer=plain.tokenizer, top_k=None, batch_size=32)
    explainer = shap.Explainer(pipe)
    explainer(texts[:1], silent=True)  # warm-up
    result = Result("shap Partition (pipeline)")
    labels = [plain.model.config.id2label[i] for i in range(plain.model.config.num_labels)]
    for text, target in zip(texts, targets, strict=True):
        started = time.perf_counter()
        values = explainer([text], silent=True)
        result.seconds.append(time.perf_counter() - started)
        column = list(values.output_names).index(labels[target])
        result.words.append(_pieces_to_words(text, list(values.data[0]), values.values[0][:, column].tolist()))
    return result


def _pieces_to_words(text: str, pieces: list[str], values: list[float]) -> list[float]:
    """shap's text masker splits the text into pieces that concatenate back to it; each piece goes to the
    whitespace word of its first visible character."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    words = [0.0] * len(starts)
    cursor = 0
    for piece, value in zip(pieces, values, strict=True):
        found = text.find(piece, cursor) if piece else -1
        if found < 0:
            continue
        visible = found + (len(piece) - len(piece.lstrip()))
        if visible < len(text):
            words[max(0, _bisect(starts, visible))] += value
        cursor = found + len(piece)
    return words


# ---- heldout ------------------------------------------------------------------------------------------------


def heldout_explain(base: str, texts: list[str], method: str) -> tuple[float, list[dict[str, Any]]]:
    body = {"inputs": texts, "method": method, "faithfulness": False}
    started = time.perf_counter()
    response = httpx.post(f"{base}/v1/explain", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=900)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()["explanations"]


async def predict_latencies(base: str, texts: list[str], seconds: float, burst: list[str] | None) -> list[float]:
    """One-sentence /v1/predict requests at PREDICT_RATE a second for ``seconds`` (open loop), while
    BURST_CLIENTS clients explain ``burst`` sentences by integrated gradients back to back, if given."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:

        async def one(text: str) -> None:
            started = time.perf_counter()
            response = await client.post("/v1/predict", json={"inputs": [text]})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

        async def explaining() -> None:
            while time.monotonic() < stop:
                body = {"inputs": burst, "method": "integrated_gradients", "faithfulness": False}
                (await client.post("/v1/explain", json=body, timeout=900)).raise_for_status()

        bursts = [asyncio.create_task(explaining()) for _ in range(BURST_CLIENTS if burst else 0)]
        await asyncio.sleep(1.0 if burst else 0)  # the burst is under way before measuring
        stop = time.monotonic() + seconds
        tasks = []
        for i in range(int(seconds * PREDICT_RATE)):
            await asyncio.sleep(max(0.0, stop - seconds + i / PREDICT_RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(texts[i % len(texts)])))
        await asyncio.gather(*tasks)
        await asyncio.gather(*bursts)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- the run -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HELDOUT_DATA_DIR", ".heldout")))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sentences", type=int, default=48)
    parser.add_argument("--peer-sentences", type=int, default=8, help="sentences the slow references explain")
    parser.add_argument("--burst-seconds", type=float, default=15.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = ensure_demo_model(args.data_dir)
    rows = (model_dir / TEST_SET_FILE).read_text().splitlines()[: args.sentences]
    texts = [json.loads(row)["text"] for row in rows]
    peers = texts[: args.peer_sentences]
    plain = Plain(model_dir)
    targets = plain.texts_probabilities(texts).argmax(-1).tolist()
    print(f"{len(texts)} sentences ({args.peer_sentences} for the slow references), {args.threads} torch threads, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()}")

    heldout: dict[str, Result] = {}
    ig_tokens: list[list[float]] = []
    with TemporaryDirectory() as scratch:
        port = free_port()
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": scratch,
            "HELDOUT_API_KEYS": f"evaluator:{API_KEY}",
            "HELDOUT_TORCH_THREADS": str(args.threads),
            "HELDOUT_EXPLAIN_MAX_INPUTS": str(max(len(texts), BURST_INPUTS)),
            "HELDOUT_LOG_LEVEL": "warning",
        }
        env.pop("HELDOUT_DATABASE_URL", None)
        command = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--port", str(port)]
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{base}/readyz", server, 300)
            heldout_explain(base, texts[:2], "integrated_gradients")  # warm-up
            for method in METHODS:
                result = heldout[method] = Result(f"heldout {method}")
                for batch in (peers, texts):  # the peers' sentences alone, then all of them
                    elapsed, explanations = heldout_explain(base, batch, method)
                    if batch is texts:
                        result.seconds = [elapsed / len(batch)] * len(batch)
                        result.words = [[w["attribution"] for w in e["words"]] for e in explanations]
                        if method == "integrated_gradients":
                            ig_tokens = [[t["attribution"] for t in e["tokens"]] for e in explanations]
                    else:
                        heldout[f"{method} peers"] = Result(result.name, [elapsed / len(batch)] * len(batch))
                print(f"  heldout {method}: {statistics.fmean(result.seconds) * 1000:.1f} ms a sentence", flush=True)
            idle = asyncio.run(predict_latencies(base, texts, args.burst_seconds, None))
            burst = asyncio.run(predict_latencies(base, texts, args.burst_seconds, texts[:BURST_INPUTS]))
        finally:
            server.terminate()
            server.wait(30)

    references: dict[str, Result] = {}
    captum_ig = references["integrated_gradients"] = Result("captum tutorial")
    largest_difference = 0.0
    for text, target, served_tokens in zip(texts, targets, ig_tokens, strict=True):
        started = time.perf_counter()
        words, tokens = captum_integrated_gradients(plain, text, target)
        captum_ig.seconds.append(time.perf_counter() - started)
        captum_ig.words.append(words)
        differences = [abs(a - b) for a, b in zip(tokens, served_tokens, strict=True)]
        largest_difference = max(largest_difference, *differences)
    print(f"  captum integrated gradients: {statistics.fmean(captum_ig.seconds) * 1000:.1f} ms a sentence", flush=True)
    for method in ("lime", "kernel_shap", "occlusion"):
        reference = references[method] = Result("captum tutorial")
        explain = captum_word_method(method)
        for text, target in zip(peers, targets[: len(peers)], strict=True):
            started = time.perf_counter()
            reference.words.append(explain(plain, text, target))
            reference.seconds.append(time.perf_counter() - started)
        print(f"  captum {method}: {statistics.fmean(reference.seconds) * 1000:.1f} ms a sentence", flush=True)
    try:
        partition = shap_partition(plain, peers, targets[: len(peers)])
        print(f"  shap Partition: {statistics.fmean(partition.seconds) * 1000:.1f} ms a sentence", flush=True)
    except ImportError:
        partition = None
        print("  shap is not installed (pip install -e '.[bench]'): no shap reference")
    report(plain, texts, targets, len(peers), heldout, references, partition, largest_difference, idle, burst)


def mean_comprehensiveness(plain: Plain, texts: list[str], targets: list[int], words: list[list[float]]) -> float:
    return statistics.fmean(
        comprehensiveness(plain, text, w, target) for text, w, target in zip(texts, words, targets, strict=True)
    )


def report(
    plain: Plain,
    texts: list[str],
    targets: list[int],
    n_peers: int,
    heldout: dict[str, Result],
    references: dict[str, Result],
    partition: Result | None,
    largest_difference: float,
    idle: list[float],
    burst: list[float],
) -> None:
    peers, peer_targets = texts[:n_peers], targets[:n_peers]
    print()
    print("| method | heldout ms/explanation | comprehensiveness | captum tutorial ms/explanation | speed-up | "
          "captum comprehensiveness |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in METHODS:
        ours = heldout[method]
        ours_ms = statistics.fmean(ours.seconds) * 1000
        comp = mean_comprehensiveness(plain, texts, targets, ours.words)
        reference = references.get(method)
        if reference is None:
            print(f"| {method} | {ours_ms:.1f} | {comp:.3f} | — | — | — |")
            continue
        whole = len(reference.seconds) == len(texts)
        against = ours if whole else heldout[f"{method} peers"]
        against_ms = statistics.fmean(against.seconds) * 1000
        ref_ms = statistics.fmean(reference.seconds) * 1000
        ref_comp = mean_comprehensiveness(plain, texts if whole else peers, targets if whole else peer_targets,
                                          reference.words)
        note = "" if whole else f" (first {n_peers})"
        print(f"| {method} | {ours_ms:.1f} | {comp:.3f} | {ref_ms:.1f}{note} | {ref_ms / against_ms:.1f}× | "
              f"{ref_comp:.3f} |")
    print(f"\nIntegrated gradients, largest difference of a token attribution from captum's: {largest_difference:.1e}")
    if partition is not None:
        partition_ms = statistics.fmean(partition.seconds) * 1000
        partition_comp = mean_comprehensiveness(plain, peers, peer_targets, partition.words)
        print(f"\nAgainst shap's Partition explainer on the first {n_peers} sentences "
              f"({partition_ms:.0f} ms a sentence, comprehensiveness {partition_comp:.3f}):\n")
        print("| heldout method | ms/explanation | speed-up | comprehensiveness (same sentences) |")
        print("|---|---:|---:|---:|")
        for method in ("kernel_shap", "occlusion", "lime", "integrated_gradients"):
            ours_ms = statistics.fmean(heldout[f"{method} peers"].seconds) * 1000
            comp = mean_comprehensiveness(plain, peers, peer_targets, heldout[method].words[:n_peers])
            print(f"| {method} | {ours_ms:.1f} | {partition_ms / ours_ms:.1f}× | {comp:.3f} |")
    idle_p99, burst_p99 = percentile(idle, 0.99) * 1000, percentile(burst, 0.99) * 1000
    print(f"\n/v1/predict at {PREDICT_RATE:g} requests a second: p50 {percentile(idle, 0.5) * 1000:.1f} ms, "
          f"p99 {idle_p99:.1f} ms idle; p50 {percentile(burst, 0.5) * 1000:.1f} ms, p99 {burst_p99:.1f} ms during "
          f"{BURST_CLIENTS} clients' integrated-gradients requests of {BURST_INPUTS} sentences: "
          f"{burst_p99 / idle_p99:.2f}× ({len(idle)} and {len(burst)} requests)")


if __name__ == "__main__":
    main()
