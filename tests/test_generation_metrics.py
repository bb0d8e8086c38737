"""heldout's BLEU / chrF / TER against sacrebleu itself, on generated text and statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import sacrebleu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

from metrics import generation, generation_stats
from metrics.bootstrap import Interval
from metrics.errors import MetricInputError
from metrics.generation import (
    MetricScore,
    bleu_arrays,
    chrf_scores,
    generation_report,
    point_score,
    ter_scores,
)
from metrics.generation_stats import (
    OFFLINE_TOKENIZERS,
    BleuSpec,
    ChrfSpec,
    MetricSpec,
    TerSpec,
    chunk_statistics,
    extract_statistics,
    shutdown_pools,
)

TOL = 1e-9

WORDS = ["the", "The", "cat", "CAT", "sat", "on", "mat", "über", "Straße", "naïve", "x1", "3.14", "1,000"]
WORDS += [
    "中文",
    "分词",
    "测试",
    "日本語",
    "한국어",
    "e-mail",
    "(hi)",
    "don't",
    "&quot;",
    "&amp;",
    "<skipped>",
]
CHARS = "ab Z9.,-!?;:'\"()[]{}&/@#$%^*_+=~`|<>\\\n\t中文字。，、「」éàüß–—…"


@st.composite
def sentences(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(alphabet=CHARS, max_size=40))
    words = draw(st.lists(st.sampled_from(WORDS), max_size=12))
    punct = draw(st.sampled_from(["", ".", " .", "!", "?", ",", "。"]))
    return " ".join(words) + punct


@st.composite
def corpora(draw: st.DrawFn, max_refs: int = 3) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and per-example reference lists; references often copy and edit the hypothesis."""
    hyps = draw(st.lists(sentences(), min_size=1, max_size=6))
    refs = []
    for hyp in hyps:
        count = draw(st.integers(1, max_refs))
        example = []
        for _ in range(count):
            if hyp and draw(st.booleans()):
                cut = draw(st.integers(0, len(hyp)))
                example.append(hyp[:cut] + draw(sentences()))
            else:
                example.append(draw(sentences()))
        refs.append(example)
    return hyps, refs


def streams(refs: Sequence[Sequence[str]]) -> list[list[Any]]:
    """sacrebleu's reference streams refs[k][i], padded with None where an example has fewer references."""
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def close(a: float, b: float, tol: float = TOL) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)


def same_float(a: float, b: float) -> bool:
    """Equal but for the rounding of numpy's SIMD exp/log against libm's.

    Both are within an ulp of the true value but round differently by CPU (AVX2 and AVX-512
    differ). Through BLEU's sum of up to six logs and one exp that compounds to tens of ulps
    at most, hence 1e-13 relative: far inside the 1e-9 the service promises. Point scores do
    not depend on it: they go through sacrebleu's own scorer.
    """
    return math.isclose(a, b, rel_tol=1e-13, abs_tol=1e-13)


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- tokenizer and statistics extraction ------------------------------------------------------


def test_template_free_regexp_covers_exactly_the_ascii_class() -> None:
    pattern = TokenizerRegexp()._re[0][0]
    matched = [c for c in range(0x110000) if pattern.fullmatch(chr(c))]
    assert matched and max(matched) < 128


@FAST
@given(st.lists(sentences(), max_size=20))
def test_template_free_regexp_equals_sacrebleu(lines: list[str]) -> None:
    ours, theirs = generation_stats._RegexpNoTemplate(), TokenizerRegexp()
    for line in lines:
        assert ours(f" {line} ") == theirs(f" {line} ")


@FAST
@given(corpora(), st.sampled_from(OFFLINE_TOKENIZERS), st.booleans(), st.integers(1, 5))
def test_bleu_segment_statistics_equal_sacrebleu(
    corpus: tuple[list[str], list[list[str]]], tokenize: str, lowercase: bool, order: int
) -> None:
    hyps, refs = corpus
    spec = BleuSpec(tokenize=tokenize, lowercase=lowercase, max_ngram_order=order)
    ours = chunk_statistics((spec,), (hyps,), refs)[0][0]
    theirs = spec.build()._extract_corpus_statistics(hyps, streams(refs))
    assert ours.tolist() == theirs


@settings(max_examples=25, deadline=None)
@given(corpora(), st.booleans(), st.sampled_from([0, 2]))
def test_chrf_and_ter_segment_statistics_equal_sacrebleu(
    corpus: tuple[list[str], list[list[str]]], lowercase: bool, word_order: int
) -> None:
    hyps, refs = corpus
    for spec in (ChrfSpec(word_order=word_order, lowercase=lowercase), TerSpec(case_sensitive=not lowercase)):
        ours = chunk_statistics((spec,), (hyps,), refs)[0][0]
        theirs = spec.build()._extract_corpus_statistics(hyps, streams(refs))
        assert np.array_equal(ours, np.asarray(theirs, dtype=np.float64))


# -- vectorised scoring equals sacrebleu's scorer ----------------------------------------------


@st.composite
def bleu_stats(draw: st.DrawFn, order: int) -> list[int]:
    total = [draw(st.integers(0, 40)) for _ in range(order)]
    correct = [draw(st.integers(0, t)) if draw(st.booleans()) else 0 for t in total]
    return [draw(st.integers(0, 50)), draw(st.integers(0, 50)), *correct, *total]


BLEU_SMOOTHING = [
    ("exp", None),
    ("none", None),
    ("floor", None),
    ("floor", 0.5),
    ("add-k", None),
    ("add-k", 2),
]


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(1, 6), st.sampled_from(BLEU_SMOOTHING), st.booleans())
def test_vectorised_bleu_equals_sacrebleu(
    data: st.DataObject, order: int, smoothing: tuple[str, float | None], effective: bool
) -> None:
    spec = BleuSpec(
        smooth_method=smoothing[0],
        smooth_value=smoothing[1],
        max_ngram_order=order,
        effective_order=effective,
    )
    rows = data.draw(st.lists(bleu_stats(order), min_size=1, max_size=5))
    arrays = bleu_arrays(np.array(rows), spec)
    for row, score, precisions, bp in zip(rows, arrays.score, arrays.precisions, arrays.bp, strict=True):
        expected = spec.build()._compute_score_from_stats(list(row))
        assert precisions.tolist() == expected.precisions
        assert same_float(score, expected.score) and same_float(bp, expected.bp)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(1, 6), st.sampled_from([0, 1, 2]), st.integers(1, 3), st.booleans())
def test_vectorised_chrf_and_ter_equal_sacrebleu(
    data: st.DataObject, char_order: int, word_order: int, beta: int, eps: bool
) -> None:
    spec = ChrfSpec(char_order=char_order, word_order=word_order, beta=beta, eps_smoothing=eps)
    n_orders = char_order + word_order
    triple = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)).map(
        lambda t: [*t[:2], min(t)]
    )
    flat_row = st.lists(triple, min_size=n_orders, max_size=n_orders).map(
        lambda ts: [v for t in ts for v in t]
    )
    rows = data.draw(st.lists(flat_row, min_size=1, max_size=4))
    for row, score in zip(rows, chrf_scores(np.array(rows), spec), strict=True):
        assert score == spec.build()._compute_score_from_stats(row).score
    mean_ref_length = st.tuples(st.integers(0, 90), st.integers(1, 3)).map(lambda t: t[0] / t[1])
    ter_rows = data.draw(st.lists(st.tuples(st.integers(0, 30), mean_ref_length), min_size=1, max_size=4))
    for ter_row, score in zip(ter_rows, ter_scores(np.array(ter_rows, dtype=float)), strict=True):
        assert score == TER()._compute_score_from_stats(list(ter_row)).score


# -- generation_report against sacrebleu's corpus and sentence scores -------------------------


def sacrebleu_bleu(hyps: list[str], refs: list[list[str]], **kwargs: Any) -> Any:
    metric = BLEU(**kwargs)
    return metric.corpus_score(hyps, streams(refs)), str(metric.get_signature())


def check_bleu(ours: MetricScore, theirs: Any, sig: str) -> None:
    assert close(ours.score, theirs.score)
    assert ours.precisions is not None and len(ours.precisions) == 4
    assert all(close(a, b) for a, b in zip(ours.precisions, theirs.precisions, strict=True))
    assert ours.bp is not None and close(ours.bp, theirs.bp)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.signature == sig


@FAST
@given(corpora(), st.sampled_from(OFFLINE_TOKENIZERS), st.booleans())
def test_bleu_report_equals_sacrebleu(
    corpus: tuple[list[str], list[list[str]]], tokenize: str, lowercase: bool
) -> None:
    hyps, refs = corpus
    ours = generation_report(
        hyps, refs, tokenize=tokenize, lowercase=lowercase, sentence_level=True, workers=1
    )
    theirs, sig = sacrebleu_bleu(hyps, refs, tokenize=tokenize, lowercase=lowercase)
    check_bleu(ours["bleu"], theirs, sig)
    expected = [
        sacrebleu.sentence_bleu(h, r, tokenize=tokenize, lowercase=lowercase).score
        for h, r in zip(hyps, refs, strict=True)
    ]
    assert ours["bleu"].sentence_scores == pytest.approx(expected, abs=TOL)


@settings(max_examples=25, deadline=None)
@given(corpora(), st.booleans(), st.sampled_from([0, 2]))
def test_chrf_and_ter_reports_equal_sacrebleu(
    corpus: tuple[list[str], list[list[str]]], lowercase: bool, word_order: int
) -> None:
    hyps, refs = corpus
    report = generation_report(
        hyps,
        refs,
        metrics=["chrf", "ter"],
        lowercase=lowercase,
        chrf_word_order=word_order,
        sentence_level=True,
        workers=1,
    )
    for name, metric in (("chrf", CHRF(word_order=word_order, lowercase=lowercase)), ("ter", TER())):
        theirs = metric.corpus_score(hyps, streams(refs))
        ours = report[name]
        assert close(ours.score, theirs.score)
        assert (ours.name, ours.signature) == (theirs.name, str(metric.get_signature()))
        assert ours.precisions is None and ours.bp is None and ours.sys_len is None
        expected = [metric.sentence_score(h, r).score for h, r in zip(hyps, refs, strict=True)]
        assert ours.sentence_scores == pytest.approx(expected, abs=TOL)


def test_variable_reference_counts_report_var_like_sacrebleu() -> None:
    hyps = ["a cat sat on the mat .", "dogs bark", ""]
    refs: list[str | list[str]] = [
        ["the cat sat on the mat .", "a cat was on a mat ."],
        "dogs bark loudly",
        ["x"],
    ]
    report = generation_report(hyps, refs, metrics=["bleu", "chrf", "ter"], workers=1)
    normalised = [[r] if isinstance(r, str) else r for r in refs]
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        theirs = metric.corpus_score(hyps, streams(normalised))
        assert report[name].signature == str(metric.get_signature())
        assert "nrefs:var" in report[name].signature
        assert close(report[name].score, theirs.score)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generation_stats, "CHUNK_SEGMENTS", 7)
    monkeypatch.setattr(generation_stats, "INLINE_BELOW", 0)


@settings(max_examples=1, deadline=None)
@given(st.lists(corpora(max_refs=2), min_size=8, max_size=8))
def test_parallel_chunks_equal_inline_and_sacrebleu(
    corpus_parts: list[tuple[list[str], list[list[str]]]],
) -> None:
    hyps = [h for part in corpus_parts for h in part[0]]
    refs = [r for part in corpus_parts for r in part[1]]
    specs: list[MetricSpec] = [BleuSpec(), ChrfSpec(word_order=2), TerSpec()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generation_stats, "CHUNK_SEGMENTS", 5)
        mp.setattr(generation_stats, "INLINE_BELOW", 0)
        parallel = extract_statistics(specs, [hyps, hyps[::-1]], refs, workers=2)
    inline = extract_statistics(specs, [hyps, hyps[::-1]], refs, workers=1)
    for spec, par, inl in zip(specs, parallel, inline, strict=True):
        assert par.shape == (2, len(hyps), spec.width) and np.array_equal(par, inl)
        theirs = spec.build().corpus_score(hyps, streams(refs)).score
        assert close(point_score(spec, par[0]).score, theirs)


def test_report_through_pool_equals_sacrebleu(small_chunks: None) -> None:
    hyps = [f"the {i} cat sat on mat number {i % 7} ." for i in range(60)]
    refs = [f"a {i} cat sat on the mat number {i % 5} ." for i in range(60)]
    report = generation_report(hyps, refs, metrics=["bleu", "chrf"], workers=2)
    assert close(report["bleu"].score, sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert close(report["chrf"].score, sacrebleu.corpus_chrf(hyps, [refs]).score)
    shutdown_pools()
    again = generation_report(hyps, refs, metrics=["bleu"], workers=2)
    assert again["bleu"].score == report["bleu"].score
    shutdown_pools()


# -- bootstrap intervals ----------------------------------------------------------------------


def synthetic(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    vocab = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "road", "big", "small", "red", ".", ","]
    refs, hyps = [], []
    for _ in range(n):
        ref = [vocab[i] for i in rng.integers(0, len(vocab), size=int(rng.integers(4, 15)))]
        hyp = [vocab[int(rng.integers(0, len(vocab)))] if rng.random() < 0.3 else t for t in ref]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return hyps, refs


def test_interval_contains_point_is_seeded_and_shrinks_with_data() -> None:
    hyps, refs = synthetic(1600, seed=1)
    metrics = ["bleu", "chrf"]
    small = generation_report(hyps[:200], refs[:200], metrics=metrics, n_resamples=300, seed=5, workers=1)
    large = generation_report(hyps, refs, metrics=metrics, n_resamples=300, seed=5, workers=1)
    repeat = generation_report(hyps, refs, metrics=metrics, n_resamples=300, seed=5, workers=1)
    other = generation_report(hyps, refs, metrics=metrics, n_resamples=300, seed=6, workers=1)
    for name in metrics:
        interval = large[name].interval
        assert isinstance(interval, Interval) and interval.level == 0.95
        assert interval.low < large[name].score < interval.high
        small_interval = small[name].interval
        assert small_interval is not None
        assert interval.high - interval.low < 0.75 * (small_interval.high - small_interval.low)
        assert repeat[name].interval == interval
        assert other[name].interval != interval


def test_parallel_resampling_equals_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    hyps, refs = synthetic(400, seed=4)
    inline = generation_report(hyps, refs, metrics=["bleu", "ter"], n_resamples=600, workers=1)
    monkeypatch.setattr(generation, "PARALLEL_RESAMPLE_CELLS", 0)
    pooled = generation_report(hyps, refs, metrics=["bleu", "ter"], n_resamples=600, workers=2)
    assert pooled == inline
    shutdown_pools()


def test_interval_signature_matches_sacrebleu_bootstrap_signature() -> None:
    hyps, refs = synthetic(50, seed=2)
    metric = BLEU()
    metric.corpus_score(hyps, [refs], n_bootstrap=20)
    ours = generation_report(hyps, refs, n_resamples=20, seed=12345, workers=1)["bleu"]
    assert ours.signature == str(metric.get_signature())


def test_interval_level_is_respected() -> None:
    hyps, refs = synthetic(300, seed=3)
    wide = generation_report(hyps, refs, n_resamples=400, confidence_level=0.99, workers=1)["bleu"].interval
    narrow = generation_report(hyps, refs, n_resamples=400, confidence_level=0.5, workers=1)["bleu"].interval
    assert wide is not None and narrow is not None
    assert wide.low < narrow.low < narrow.high < wide.high


# -- bad input --------------------------------------------------------------------------------

GOOD: dict[str, Any] = {"hypotheses": ["a b c"], "references": ["a b c"]}
BAD_INPUTS = [
    ({"hypotheses": ["a", "b"]}, "references"),
    ({"hypotheses": [], "references": []}, "hypotheses"),
    ({"hypotheses": "a b c"}, "hypotheses"),
    ({"hypotheses": [None]}, "hypotheses"),
    ({"hypotheses": [3]}, "hypotheses"),
    ({"references": [None]}, "references"),
    ({"references": [["a", 3]]}, "references"),
    ({"references": [[]]}, "references"),
    ({"references": "a b c"}, "references"),
    ({"metrics": ["bleu", "meteor"]}, "metrics"),
    ({"metrics": []}, "metrics"),
    ({"tokenize": "moses"}, "tokenize"),
    ({"tokenize": "ja-mecab"}, "tokenize"),
    ({"tokenize": "spm"}, "tokenize"),
    ({"tokenize": "flores200"}, "tokenize"),
    ({"chrf_word_order": 1}, "chrf_word_order"),
    ({"lowercase": "yes"}, "lowercase"),
    ({"max_segments": 0}, "hypotheses"),
    ({"n_resamples": 11, "max_resamples": 10}, "n_resamples"),
    ({"n_resamples": -1}, "n_resamples"),
    ({"n_resamples": 10, "confidence_level": 1.0}, "confidence_level"),
    ({"seed": "0"}, "seed"),
    ({"workers": 0}, "workers"),
]


@pytest.mark.parametrize(("override", "field"), BAD_INPUTS)
def test_bad_input_names_the_field(override: dict[str, Any], field: str) -> None:
    kwargs = {**GOOD, **override}
    with pytest.raises(MetricInputError) as info:
        generation_report(kwargs.pop("hypotheses"), kwargs.pop("references"), **kwargs)
    assert info.value.field == field


def test_single_metric_name_string_is_accepted() -> None:
    assert list(generation_report(["a b"], ["a b"], metrics="chrf", workers=1)) == ["chrf"]
