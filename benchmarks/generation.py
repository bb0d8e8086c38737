"""Generation metrics on 100,000 synthetic segment pairs (~25 tokens): heldout vs sacrebleu.

Run from the repository root: python -m benchmarks.generation

Inputs are fixed (seed 2024) and the same for every row: hypotheses drawn from a Zipf-weighted
vocabulary of common English words with numbers and punctuation, references made from them by
random substitutions, deletions and insertions, and a second system made from the hypotheses by
further edits. In-process rows report the median of 3 runs, taken in turns with the rows they are
compared with so that load from other processes hits both alike. chrF rows run once each in a fresh
subprocess so that peak RSS (the subprocess plus its worker processes) is not mixed between rows.
Paired tests use the first 10,000 segments: sacrebleu's PairedTest materialises every resample
(a 1000 x n x d float array), which at 100,000 segments needs 4 GB per system.

ROUGE rows score rouge1, rouge2, rougeL and rougeLsum of the same segments made into summaries: a
newline after about one token in ten, drawn separately for hypotheses and references, so rougeLsum
compares sentences. rouge-score's ``RougeScorer.score`` runs per segment in this process, as
``evaluate`` runs it; its stemmer rows use the first 20,000 segments.

Targets: BLEU >= 1.7x faster than sacrebleu.corpus_bleu with the identical score; chrF peak RSS
<= 1/4 of sacrebleu's; a 1,000-resample interval adds <= 20% to the point time; the paired bootstrap
(n=1000) >= 10x faster than PairedTest; ROUGE with a 1,000-resample interval >= 5x faster than
rouge-score with 2 workers, equal means.

``python -m benchmarks.generation rouge`` runs the ROUGE rows alone.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import multiprocessing
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from metrics.bootstrap import make_rng
from metrics.generation import generation_report, score_function
from metrics.generation_stats import BleuSpec, extract_statistics, shutdown_pools
from metrics.significance import compare_generation, paired_bootstrap

N = 100_000
PAIRED_N = 10_000
RESAMPLES = 1000
RUNS = 3
SEED = 2024
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
ROUGE_WORKERS = 2
STEMMED_N = 20_000

_COMMON_WORDS = (
    "the of and to in a is that for it as was with be by on not he i this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more can out "
    "about up who them some could what into time only new other then two may its these first any my now "
    "such like our over man me even most made after also did many before must through back years where "
    "much your way well down should because each just those people how too little state good very make "
    "world still own see men work long get here between both life being under never day same another know "
    "while last might us great old year off come since against go came right used take three himself few "
    "house use during without again place around however home small found thought went say part once "
    "general high upon school every does got united left number course war until always away something "
    "fact though water less public put think almost hand enough far took head yet government system "
    "better set told nothing night end why called eyes find going look asked later knew point next city "
    "business give group toward young days let room president side social given present several order "
    "national second possible rather per face among form important often things looked early white case "
    "become large big need four within felt along children saw best church ever least power development "
    "light thing seemed family interest want members mind country market report police company health "
    "minister service money research policy court control"
)
WORDS = _COMMON_WORDS.split()
PUNCTUATION = [",", ";", ":", "!", "?", "'s", ")", "-"]


def make_corpus(n: int = N, seed: int = SEED) -> tuple[list[str], list[str], list[str]]:
    """(hypotheses, references, second system): references and the second system edit the hypotheses."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    prior = 1.0 / np.arange(1, len(words) + 1)
    prior /= prior.sum()
    lengths = np.clip(np.rint(rng.normal(25, 6, size=n)), 5, 60).astype(int)
    tokens = words[rng.choice(len(words), size=int(lengths.sum()), p=prior)]
    decoration = rng.random(tokens.size)
    numbers = decoration < 0.04
    tokens[numbers] = rng.integers(0, 5000, size=int(numbers.sum())).astype(str).astype(object)
    punct = (decoration >= 0.04) & (decoration < 0.12)
    tokens[punct] = (
        tokens[punct] + np.array(PUNCTUATION, dtype=object)[rng.integers(0, len(PUNCTUATION), punct.sum())]
    )
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    segments = [list(tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    hyps = [" ".join([seg[0].capitalize(), *seg[1:]]) + "." for seg in segments]
    return hyps, _edit(hyps, rng, 0.12), _edit(hyps, rng, 0.08)


def _edit(sentences: list[str], rng: np.random.Generator, rate: float) -> list[str]:
    """Substitute, delete or insert after each token, each with probability rate/2, rate/4, rate/4."""
    out = []
    for sentence in sentences:
        tokens = sentence.split()
        draws = rng.random(len(tokens))
        picks = rng.integers(0, len(WORDS), size=len(tokens))
        edited: list[str] = []
        for token, draw, pick in zip(tokens, draws, picks, strict=True):
            if draw < rate / 2:
                edited.append(WORDS[pick])
            elif draw < 3 * rate / 4:
                continue
            elif draw < rate:
                edited.extend([token, WORDS[pick]])
            else:
                edited.append(token)
        out.append(" ".join(edited))
    return out


def timed_together(fns: dict[str, Callable[[], Any]], runs: int = RUNS) -> dict[str, tuple[float, Any]]:
    """Median wall time and last result of each function, run in turns so load changes hit all alike.

    Garbage is collected before each run, so no row pays for the objects the row before it left behind.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, Any] = {}
    for _ in range(runs):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


# -- chrF in a fresh subprocess, for peak memory ----------------------------------------------


def _peak_kib(pid: int | str = "self") -> int:
    """VmHWM, the peak RSS of a process image; ru_maxrss would include the parent's pages before exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def _chrf_child(which: str, corpus_path: str) -> None:
    """Score chrF once; print wall time and peak RSS in KiB, its own and summed over its worker processes."""
    with open(corpus_path, "rb") as f:
        hyps, refs = pickle.load(f)
    start = time.perf_counter()
    if which == "sacrebleu":
        score = sacrebleu.corpus_chrf(hyps, [refs]).score
    else:
        score = generation_report(hyps, refs, metrics=["chrf"], workers=os.cpu_count())["chrf"].score
    seconds = time.perf_counter() - start
    workers = sum(_peak_kib(child.pid) for child in multiprocessing.active_children() if child.pid)
    shutdown_pools()
    print(json.dumps({"score": score, "seconds": seconds, "own_kib": _peak_kib(), "workers_kib": workers}))


def chrf_in_subprocess(which: str, corpus_path: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.generation", "--chrf-child", which, corpus_path]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- paired tests ------------------------------------------------------------------------------


class _PrecomputedBLEU(BLEU):
    """sacrebleu's BLEU with statistics extracted beforehand, so PairedTest times only its resampling."""

    def __init__(self, stats: dict[int, list[list[int]]]) -> None:
        super().__init__()
        self._stats = stats

    def _extract_corpus_statistics(self, hypotheses: Any, references: Any) -> list[list[int]]:
        self.num_refs = 1
        return self._stats[id(hypotheses)]


def sacrebleu_paired(base: list[str], cand: list[str], refs: list[str], metric: BLEU) -> float:
    _, scores = PairedTest([("base", base), ("cand", cand)], {"BLEU": metric}, [refs], "bs", RESAMPLES)()
    result: Any = scores["BLEU"][1]
    return float(result.p_value)


# -- report ---------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str]  # row, seconds, vs sacrebleu, peak RSS, check
Target = tuple[str, str, bool]


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def bleu_rows(hyps: list[str], refs: list[str], workers: int) -> tuple[list[Row], list[Target]]:
    generation_report(hyps[:5000], refs[:5000], workers=workers)  # start the pool outside the timing
    timings = timed_together(
        {
            "sacrebleu": lambda: sacrebleu.corpus_bleu(hyps, [refs]),
            "point": lambda: generation_report(hyps, refs, workers=workers)["bleu"],
            "interval": lambda: generation_report(hyps, refs, n_resamples=RESAMPLES, workers=workers)["bleu"],
        }
    )
    (t_sacre, theirs), (t_point, ours), (t_boot, boot) = timings.values()
    same = math.isclose(ours.score, theirs.score, abs_tol=1e-9) and (ours.sys_len, ours.ref_len) == (
        theirs.sys_len,
        theirs.ref_len,
    )
    overhead = t_boot / t_point - 1
    rows: list[Row] = [
        ("sacrebleu.corpus_bleu", f"{t_sacre:.2f}", "1.00x", "", f"BLEU {theirs.score:.4f}"),
        (
            f"heldout BLEU (workers={workers})",
            f"{t_point:.2f}",
            f"{t_sacre / t_point:.2f}x",
            "",
            f"BLEU {ours.score:.4f}, identical: {same}",
        ),
        (
            f"heldout BLEU + {RESAMPLES}-resample interval",
            f"{t_boot:.2f}",
            f"{t_sacre / t_boot:.2f}x",
            "",
            f"{100 * overhead:+.1f}% over point; [{boot.interval.low:.3f}, {boot.interval.high:.3f}]",
        ),
    ]
    for n_workers in sorted({1, 2, workers} - {workers}):
        t_scaled, _ = timed_together(
            {"bleu": functools.partial(generation_report, hyps, refs, workers=n_workers)}
        )["bleu"]
        rows.append(
            (
                f"heldout BLEU (workers={n_workers})",
                f"{t_scaled:.2f}",
                f"{t_sacre / t_scaled:.2f}x",
                "",
                "scaling",
            )
        )
    targets: list[Target] = [
        (
            "BLEU >= 1.7x faster than sacrebleu, identical score",
            f"{t_sacre / t_point:.2f}x",
            t_sacre / t_point >= 1.7 and same,
        ),
        ("bootstrap interval adds <= 20% to point time", f"{100 * overhead:+.1f}%", overhead <= 0.20),
    ]
    return rows, targets


def chrf_rows(hyps: list[str], refs: list[str], workers: int) -> tuple[list[Row], list[Target]]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = str(Path(tmp) / "corpus.pkl")
        with open(corpus_path, "wb") as f:
            pickle.dump((hyps, refs), f)
        theirs = chrf_in_subprocess("sacrebleu", corpus_path)
        mine = chrf_in_subprocess("heldout", corpus_path)
    their_peak, my_peak = theirs["own_kib"], mine["own_kib"] + mine["workers_kib"]
    same = math.isclose(theirs["score"], mine["score"], abs_tol=1e-9)
    rows: list[Row] = [
        (
            "sacrebleu.corpus_chrf (fresh process, 1 run)",
            f"{theirs['seconds']:.2f}",
            "1.00x",
            _mib(their_peak),
            f"chrF {theirs['score']:.4f}",
        ),
        (
            f"heldout chrF (fresh process, 1 run, workers={workers})",
            f"{mine['seconds']:.2f}",
            f"{theirs['seconds'] / mine['seconds']:.2f}x",
            f"{_mib(my_peak)} = {_mib(mine['own_kib'])} + workers {_mib(mine['workers_kib'])}",
            f"chrF {mine['score']:.4f}, identical: {same}",
        ),
    ]
    target = (
        "chrF peak RSS <= 1/4 of sacrebleu's",
        f"{my_peak / their_peak:.3f} of sacrebleu's",
        my_peak <= their_peak / 4 and same,
    )
    return rows, [target]


def paired_rows(
    hyps: list[str], refs: list[str], second: list[str], workers: int
) -> tuple[list[Row], list[Target]]:
    base, cand, sub_refs = hyps[:PAIRED_N], second[:PAIRED_N], refs[:PAIRED_N]
    spec = BleuSpec()
    base_stats, cand_stats = extract_statistics(
        [spec], [base, cand], [[r] for r in sub_refs], workers=workers
    )[0]
    precomputed = {id(base): base_stats.tolist(), id(cand): cand_stats.tolist()}
    timings = timed_together(
        {
            "sacrebleu": lambda: sacrebleu_paired(base, cand, sub_refs, BLEU()),
            "ours": lambda: compare_generation(sub_refs, base, cand, n_resamples=RESAMPLES, workers=workers)[
                "bleu"
            ],
            "sacrebleu test": lambda: sacrebleu_paired(base, cand, sub_refs, _PrecomputedBLEU(precomputed)),
            "ours test": lambda: paired_bootstrap(
                base_stats, cand_stats, score_function(spec), RESAMPLES, make_rng(12345)
            ),
        }
    )
    (t_sacre, p_sacre), (t_ours, paired), (t_sacre_test, _), (t_ours_test, _) = timings.values()
    label = f"n={RESAMPLES}, {PAIRED_N:,} segments"
    rows: list[Row] = [
        (f"sacrebleu PairedTest bs ({label})", f"{t_sacre:.2f}", "1.00x", "", f"p={p_sacre:.4f}"),
        (
            f"heldout compare_generation bs ({label})",
            f"{t_ours:.2f}",
            f"{t_sacre / t_ours:.2f}x",
            "",
            f"p={paired.p_value:.4f}",
        ),
        ("sacrebleu PairedTest, statistics given (the test only)", f"{t_sacre_test:.3f}", "1.00x", "", ""),
        (
            "heldout paired_bootstrap, statistics given",
            f"{t_ours_test:.3f}",
            f"{t_sacre_test / t_ours_test:.1f}x",
            "",
            "",
        ),
    ]
    targets: list[Target] = [
        (
            "paired bootstrap >= 10x faster than PairedTest, end to end (with extraction)",
            f"{t_sacre / t_ours:.2f}x",
            t_sacre / t_ours >= 10,
        ),
        (
            "paired bootstrap >= 10x faster than PairedTest, the test on the same statistics",
            f"{t_sacre_test / t_ours_test:.1f}x",
            t_sacre_test / t_ours_test >= 10,
        ),
    ]
    return rows, targets


# -- ROUGE -------------------------------------------------------------------------------------


def summaries(texts: list[str], rng: np.random.Generator, rate: float = 0.1) -> list[str]:
    """Each text with a newline instead of a space after about one token in ten: multi-sentence summaries."""
    out = []
    for text in texts:
        tokens = text.split(" ")
        breaks = rng.random(len(tokens) - 1) < rate
        out.append("".join(t + ("\n" if b else " ") for t, b in zip(tokens, breaks, strict=False)) + tokens[-1])
    return out


def rouge_score_means(hyps: list[str], refs: list[str], use_stemmer: bool) -> dict[str, float]:
    """rouge-score one segment at a time: 100 x the mean F-measure per type."""
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
    f_measures: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for hyp, ref in zip(hyps, refs, strict=True):
        for name, score in scorer.score(ref, hyp).items():
            f_measures[name].append(score.fmeasure)
    return {name: 100 * float(np.mean(values)) for name, values in f_measures.items()}


def _heldout_rouge(hyps: list[str], refs: list[str], **options: Any) -> dict[str, Any]:
    return generation_report(hyps, refs, metrics=ROUGE_TYPES, workers=ROUGE_WORKERS, **options)


def _largest_gap(theirs: dict[str, float], ours: dict[str, Any]) -> float:
    return max(abs(theirs[name] - ours[name].score) for name in ROUGE_TYPES)


def rouge_rows(hyps: list[str], refs: list[str]) -> tuple[list[Row], list[Target]]:
    rng = np.random.default_rng(SEED + 1)
    hyps, refs = summaries(hyps, rng), summaries(refs, rng)
    _heldout_rouge(hyps[:5000], refs[:5000])  # start the pool outside the timing
    timings = timed_together(
        {
            "rouge-score": lambda: rouge_score_means(hyps, refs, use_stemmer=False),
            "point": lambda: _heldout_rouge(hyps, refs),
            "interval": lambda: _heldout_rouge(hyps, refs, n_resamples=RESAMPLES),
        }
    )
    (t_theirs, theirs), (t_point, ours), (t_boot, boot) = timings.values()
    stemmed = timed_together(
        {
            "rouge-score": lambda: rouge_score_means(hyps[:STEMMED_N], refs[:STEMMED_N], use_stemmer=True),
            "interval": lambda: _heldout_rouge(
                hyps[:STEMMED_N], refs[:STEMMED_N], n_resamples=RESAMPLES, rouge_stemmer=True
            ),
        },
        runs=1,
    )
    (t_stem_theirs, stem_theirs), (t_stem_ours, stem_ours) = stemmed.values()
    gap = max(_largest_gap(theirs, ours), _largest_gap(theirs, boot), _largest_gap(stem_theirs, stem_ours))
    means = ", ".join(f"{name} {theirs[name]:.4f}" for name in ROUGE_TYPES)
    lsum = boot["rougeLsum"].interval
    rows: list[Row] = [
        (f"rouge-score RougeScorer.score, 4 types ({N:,} summaries)", f"{t_theirs:.2f}", "1.00x", "", means),
        (
            f"heldout ROUGE, 4 types (workers={ROUGE_WORKERS})",
            f"{t_point:.2f}",
            f"{t_theirs / t_point:.2f}x",
            "",
            f"largest |mean difference| {_largest_gap(theirs, ours):.1e}",
        ),
        (
            f"heldout ROUGE + {RESAMPLES}-resample intervals (workers={ROUGE_WORKERS})",
            f"{t_boot:.2f}",
            f"{t_theirs / t_boot:.2f}x",
            "",
            f"rougeLsum [{lsum.low:.3f}, {lsum.high:.3f}]",
        ),
        (
            f"rouge-score with stemmer ({STEMMED_N:,} summaries, 1 run)",
            f"{t_stem_theirs:.2f}",
            "1.00x",
            "",
            f"rougeL {stem_theirs['rougeL']:.4f}",
        ),
        (
            f"heldout ROUGE with stemmer + {RESAMPLES}-resample intervals (1 run)",
            f"{t_stem_ours:.2f}",
            f"{t_stem_theirs / t_stem_ours:.2f}x",
            "",
            f"largest |mean difference| {_largest_gap(stem_theirs, stem_ours):.1e}",
        ),
    ]
    target = (
        f"ROUGE with intervals >= 5x faster than rouge-score (workers={ROUGE_WORKERS}), equal means",
        f"{t_theirs / t_boot:.2f}x, largest gap {gap:.1e}",
        t_theirs / t_boot >= 5 and gap < 1e-9,
    )
    return rows, [target]


def print_tables(rows: list[Row], targets: list[Target]) -> None:
    print()
    print("| row | seconds | vs reference | peak RSS | check |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("| target | measured | result |")
    print("|---|---:|---|")
    for name, measured, ok in targets:
        print(f"| {name} | {measured} | {'PASS' if ok else 'FAIL'} |")


def main(sections: list[str]) -> None:
    warnings.simplefilter("ignore")
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    hyps, refs, second = make_corpus()
    tokens = sum(len(h.split()) for h in hyps) / len(hyps)
    print(
        f"corpus: {N:,} segments, {tokens:.1f} whitespace tokens per hypothesis, built in "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(f"python {sys.version.split()[0]}, sacrebleu {sacrebleu.__version__}, {workers} CPUs and workers")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows: list[Row] = []
    targets: list[Target] = []
    runs: dict[str, Callable[[], tuple[list[Row], list[Target]]]] = {
        "bleu": lambda: bleu_rows(hyps, refs, workers),
        "chrf": lambda: chrf_rows(hyps, refs, workers),
        "paired": lambda: paired_rows(hyps, refs, second, workers),
        "rouge": lambda: rouge_rows(hyps, refs),
    }
    for section in sections:
        section_rows, section_targets = runs[section]()
        rows += section_rows
        targets += section_targets
    shutdown_pools()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print_tables(rows, targets)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--chrf-child":
        _chrf_child(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:] or ["bleu", "chrf", "paired", "rouge"])
