"""Explanation benchmark: heldout's /v1/explain on the demo MiniLM classifier against two references.

* captum as its tutorials call it: one sentence per call, the model as transformers loads it, each
  method's defaults (integrated gradients: ``LayerIntegratedGradients`` over the word embeddings with 50
  steps in one batch; LIME, kernel SHAP and feature ablation one perturbation per forward pass), with
  the same baselines, word features and number of samples as heldout;
* shap's Partition explainer (``shap.Explainer``) over a transformers text-classification pipeline
  (batch size 32, every label's score), at its defaults (500 evaluations a sentence).

heldout runs as ``heldout serve`` (a subprocess, the same torch threads as this process) and gets the
sentences in requests of ``--chunk``, without faithfulness scores (the references compute none). Each
reference is timed right after heldout on the same chunk, and a speed-up is the median of the chunks'
ratios. Every method's explanations are scored alike here, by ERASER comprehensiveness: the drop of the
target's probability when the top 10, 20 and 50% of the words (by attribution) are deleted from the text,
averaged, by the plain model. The slow references run on the first sentences: captum's one-sample calls on
``--peer-sentences``, shap's on ``--shap-sentences`` (sentence by sentence, beside heldout's one-sentence
requests), where the comprehensiveness difference is also paired by sentence and given a bootstrap
interval. Last, ``/v1/predict`` latency (one sentence, 20 requests a second) is measured idle and during a
burst of explanation requests, in alternated rounds.

Usage: ``python -m benchmarks.explain [--sentences 48] [--peer-sentences 8] [--shap-sentences 16]``; the shap
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
import numpy as np
import torch
from captum.attr import FeatureAblation, KernelShap, LayerIntegratedGradients, Lime
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from metrics.bootstrap import make_rng, percentile_interval, resampled_sums
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


def heldout_explain(base: str, texts: list[str], method: str, **options: Any) -> tuple[float, list[dict[str, Any]]]:
    body = {"inputs": texts, "method": method, "faithfulness": False, **options}
    started = time.perf_counter()
    response = httpx.post(f"{base}/v1/explain", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=900)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()["explanations"]


async def predict_latencies(
    base: str, texts: list[str], seconds: float, burst: list[str] | None
) -> tuple[list[float], int]:
    """One-sentence /v1/predict requests at PREDICT_RATE a second for ``seconds`` (open loop), while
    BURST_CLIENTS clients explain ``burst`` sentences by integrated gradients back to back, if given.
    Returns the predictions' latencies and the sentences explained meanwhile."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    latencies: list[float] = []
    explained = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:

        async def one(text: str) -> None:
            started = time.perf_counter()
            response = await client.post("/v1/predict", json={"inputs": [text]})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

        async def explaining() -> None:
            nonlocal explained
            while time.monotonic() < stop:
                body = {"inputs": burst, "method": "integrated_gradients", "faithfulness": False}
                (await client.post("/v1/explain", json=body, timeout=900)).raise_for_status()
                explained += len(body["inputs"])

        bursts = [asyncio.create_task(explaining()) for _ in range(BURST_CLIENTS if burst else 0)]
        await asyncio.sleep(1.0 if burst else 0)  # the burst is under way before measuring
        stop = time.monotonic() + seconds
        tasks = []
        for i in range(int(seconds * PREDICT_RATE)):
            await asyncio.sleep(max(0.0, stop - seconds + i / PREDICT_RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(texts[i % len(texts)])))
        await asyncio.gather(*tasks)
        await asyncio.gather(*bursts)
    return latencies, explained


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- the run -----------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """heldout against one reference on the same sentences, measured back to back chunk by chunk (this
    machine's speed drifts by tens of percent within a minute, so each chunk's ratio is taken between
    neighbouring measurements and the verdict is their median)."""

    method: str
    reference: str
    sentences: int = 0
    heldout_s: float = 0.0
    reference_s: float = 0.0
    ratios: list[float] = field(default_factory=list)
    heldout_words: list[list[float]] = field(default_factory=list)
    reference_words: list[list[float]] = field(default_factory=list)

    def add(self, n: int, heldout_s: float, reference_s: float) -> None:
        self.sentences += n
        self.heldout_s += heldout_s
        self.reference_s += reference_s
        self.ratios.append(reference_s / heldout_s)


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def captum_reference(method: str) -> Callable[[Plain, str, int], list[float]]:
    if method == "integrated_gradients":
        return lambda plain, text, target: captum_integrated_gradients(plain, text, target)[0]
    return captum_word_method(method)


def compare(
    base: str, plain: Plain, texts: list[str], targets: dict[str, int], method: str, chunk: int
) -> Comparison:
    """heldout (one request per chunk) against captum as its tutorials call it (one sentence per call)."""
    comparison = Comparison(method, "captum tutorial")
    explain = captum_reference(method)
    for part in chunks(texts, chunk):
        heldout_s, explanations = heldout_explain(base, part, method)
        started = time.perf_counter()
        words = [explain(plain, text, targets[text]) for text in part]
        comparison.add(len(part), heldout_s, time.perf_counter() - started)
        comparison.heldout_words += [[w["attribution"] for w in e["words"]] for e in explanations]
        comparison.reference_words += words
    return comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HELDOUT_DATA_DIR", ".heldout")))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sentences", type=int, default=48)
    parser.add_argument("--chunk", type=int, default=8, help="sentences per heldout request")
    parser.add_argument("--peer-sentences", type=int, default=8, help="sentences captum's one-sample calls explain")
    parser.add_argument("--shap-sentences", type=int, default=16, help="sentences shap's Partition explains")
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="idle and burst latency measurements, alternated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = ensure_demo_model(args.data_dir)
    rows = (model_dir / TEST_SET_FILE).read_text().splitlines()[: args.sentences]
    texts = [json.loads(row)["text"] for row in rows]
    peers = texts[: args.peer_sentences]
    plain = Plain(model_dir)
    targets = dict(zip(texts, plain.texts_probabilities(texts).argmax(-1).tolist(), strict=True))
    print(f"{len(texts)} sentences ({len(peers)} for the slow references), {args.threads} torch threads, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)

    with TemporaryDirectory() as scratch:
        port = free_port()
        env = {
            **os.environ,
            "HELDOUT_DATA_DIR": scratch,
            "HELDOUT_API_KEYS": f"evaluator:{API_KEY}",
            "HELDOUT_TORCH_THREADS": str(args.threads),
            "HELDOUT_EXPLAIN_MAX_INPUTS": str(max(args.chunk, BURST_INPUTS)),
            "HELDOUT_LOG_LEVEL": "warning",
        }
        env.pop("HELDOUT_DATABASE_URL", None)
        command = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--port", str(port)]
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{base}/readyz", server, 300)
            heldout_explain(base, texts[:2], "integrated_gradients")  # warm-up
            everything: dict[str, Result] = {}
            for method in METHODS:
                result = everything[method] = Result(method)
                for part in chunks(texts, args.chunk):
                    elapsed, explanations = heldout_explain(base, part, method)
                    result.seconds += [elapsed / len(part)] * len(part)
                    result.words += [[w["attribution"] for w in e["words"]] for e in explanations]
                print(f"  heldout {method}: {statistics.fmean(result.seconds) * 1000:.1f} ms a sentence", flush=True)
            comparisons = [compare(base, plain, texts, targets, "integrated_gradients", args.chunk)]
            # The slow references in chunks of a quarter of their sentences, so that they interleave too.
            quarter = max(1, len(peers) // 4)
            slow = ("lime", "kernel_shap", "occlusion")
            comparisons += [compare(base, plain, peers, targets, m, quarter) for m in slow]
            for c in comparisons:
                print(f"  {c.method} against captum: {c.reference_s / c.heldout_s:.1f}x", flush=True)
            partition = shap_comparisons(base, plain, texts[: args.shap_sentences], targets)
            latency: list[tuple[list[float], list[float], int]] = []
            for _ in range(args.rounds):
                idle, _ = asyncio.run(predict_latencies(base, texts, args.burst_seconds, None))
                burst, explained = asyncio.run(predict_latencies(base, texts, args.burst_seconds, texts[:BURST_INPUTS]))
                latency.append((idle, burst, explained))
        finally:
            server.terminate()
            server.wait(30)
    report(plain, texts, targets, everything, comparisons, partition, latency)


def shap_comparisons(base: str, plain: Plain, texts: list[str], targets: dict[str, int]) -> list[Comparison]:
    """heldout's kernel SHAP, occlusion, LIME and integrated gradients against shap's Partition explainer,
    sentence by sentence, back to back."""
    try:
        import shap
    except ImportError:
        print("  shap is not installed (pip install -e '.[bench]'): no shap reference")
        return []
    from transformers import pipeline

    pipe = pipeline("text-classification", model=plain.model, tokenizer=plain.tokenizer, top_k=None, batch_size=32)
    explainer = shap.Explainer(pipe)
    explainer(texts[:1], silent=True)  # warm-up
    labels = [plain.model.config.id2label[i] for i in range(plain.model.config.num_labels)]
    methods = ("kernel_shap", "occlusion", "lime", "integrated_gradients", "kernel_shap 500")
    comparisons = {method: Comparison(method, "shap Partition") for method in methods}
    for text in texts:
        started = time.perf_counter()
        values = explainer([text], silent=True)
        partition_s = time.perf_counter() - started
        column = list(values.output_names).index(labels[targets[text]])
        partition_words = _pieces_to_words(text, list(values.data[0]), values.values[0][:, column].tolist())
        for method, comparison in comparisons.items():
            name, _, samples = method.partition(" ")
            options = {"n_samples": int(samples)} if samples else {}
            heldout_s, explanations = heldout_explain(base, [text], name, **options)
            comparison.add(1, heldout_s, partition_s)
            comparison.heldout_words.append([w["attribution"] for w in explanations[0]["words"]])
            comparison.reference_words.append(partition_words)
    print(f"  shap Partition: {comparisons['occlusion'].reference_s / len(texts) * 1000:.0f} ms a sentence", flush=True)
    return list(comparisons.values())


def mean_comprehensiveness(plain: Plain, texts: list[str], targets: dict[str, int], words: list[list[float]]) -> float:
    return statistics.fmean(
        comprehensiveness(plain, text, w, targets[text]) for text, w in zip(texts, words, strict=True)
    )


def paired_difference(plain: Plain, texts: list[str], targets: dict[str, int], c: "Comparison") -> tuple[float, ...]:
    """Mean per-sentence comprehensiveness of heldout minus the reference's, and its 95% percentile bootstrap
    interval (2,000 resamples of the sentences): a handful of sentences cannot tell small differences apart."""
    diffs = [
        comprehensiveness(plain, text, ours, targets[text]) - comprehensiveness(plain, text, theirs, targets[text])
        for text, ours, theirs in zip(texts, c.heldout_words, c.reference_words, strict=True)
    ]
    means = resampled_sums(np.array(diffs), 2000, make_rng(0))[:, 0] / len(diffs)
    interval = percentile_interval(means, 0.95)
    return statistics.fmean(diffs), interval.low, interval.high


def report(
    plain: Plain,
    texts: list[str],
    targets: dict[str, int],
    everything: dict[str, Result],
    comparisons: list[Comparison],
    partition: list[Comparison],
    latency: list[tuple[list[float], list[float], int]],
) -> None:
    print(f"\nheldout, {len(texts)} sentences in requests of up to 16, faithfulness off:\n")
    print("| method | ms/explanation | comprehensiveness |")
    print("|---|---:|---:|")
    for method, result in everything.items():
        comp = mean_comprehensiveness(plain, texts, targets, result.words)
        print(f"| {method} | {statistics.fmean(result.seconds) * 1000:.1f} | {comp:.3f} |")
    print("\nAgainst the references, on the same sentences, measured back to back:\n")
    print("| method | reference | sentences | heldout ms | reference ms | speed-up (median of chunks) | "
          "heldout comprehensiveness | reference comprehensiveness |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for c in [*comparisons, *partition]:
        sentences = texts[: c.sentences]
        print(f"| {c.method} | {c.reference} | {c.sentences} | {c.heldout_s / c.sentences * 1000:.1f} | "
              f"{c.reference_s / c.sentences * 1000:.1f} | {statistics.median(c.ratios):.1f}× | "
              f"{mean_comprehensiveness(plain, sentences, targets, c.heldout_words):.3f} | "
              f"{mean_comprehensiveness(plain, sentences, targets, c.reference_words):.3f} |")
    print("\nComprehensiveness, heldout minus shap's Partition explainer, paired by sentence:\n")
    print("| method | sentences | speed-up | difference | 95% interval | >= 5x and not shown worse |")
    print("|---|---:|---:|---:|---|---|")
    for c in partition:
        mean, low, high = paired_difference(plain, texts[: c.sentences], targets, c)
        verdict = "PASS" if statistics.median(c.ratios) >= 5 and high >= 0 else "FAIL"
        print(f"| {c.method} | {c.sentences} | {statistics.median(c.ratios):.1f}× | {mean:+.3f} | "
              f"[{low:+.3f}, {high:+.3f}] | {verdict} |")
    ig = comparisons[0]
    largest = max(
        max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
        for ours, theirs in zip(ig.heldout_words, ig.reference_words, strict=True)
    )
    print(f"\nIntegrated gradients, largest difference of a word's attribution from captum's: {largest:.1e}")
    print(f"\n/v1/predict, one sentence, {PREDICT_RATE:g} requests a second, idle and during {BURST_CLIENTS} clients' "
          f"integrated-gradients requests of {BURST_INPUTS} sentences, rounds alternated:\n")
    print("| round | idle p50 ms | idle p99 ms | burst p50 ms | burst p99 ms | p99 ratio | sentences explained |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for number, (idle, burst, explained) in enumerate(latency, 1):
        idle_p99, burst_p99 = percentile(idle, 0.99) * 1000, percentile(burst, 0.99) * 1000
        ratios.append(burst_p99 / idle_p99)
        idle_p50, burst_p50 = percentile(idle, 0.5) * 1000, percentile(burst, 0.5) * 1000
        print(f"| {number} | {idle_p50:.1f} | {idle_p99:.1f} | {burst_p50:.1f} | {burst_p99:.1f} | {ratios[-1]:.2f}× | "
              f"{explained} |")
    print(f"\nMedian p99 ratio: {statistics.median(ratios):.2f}× (target at most 1.5×)")


if __name__ == "__main__":
    main()
