"""heldout's BLEU / chrF / TER against external ground truth: sacrebleu's upstream test vectors and
the official WMT17 en-de scores of mteval, tercom and chrF++.py.

TER is slow (sacrebleu's Python tercom: ~15 s per WMT17 system on one core), so by default one system
is checked against tercom; the test marked ``slow`` (``python -m pytest -m slow``) checks all 16.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF, TER

from metrics.generation import bleu_arrays, chrf_scores, generation_report, point_score, ter_scores
from metrics.generation_stats import (
    BleuSpec,
    ChrfSpec,
    MetricSpec,
    TerSpec,
    chunk_statistics,
    extract_statistics,
)

TRUTH = Path(__file__).resolve().parents[1].parent / "shared" / "truth"
VECTORS_FILE = TRUTH / "sacrebleu_test_vectors.json"
WMT17_FILE = TRUTH / "wmt17_en_de_systems.json"
TER_SYSTEMS = ("newstest2017.LIUM-NMT.4900.en-de",)
OFFICIAL_TOL = 0.01


@cache
def _load(path: Path) -> Any:
    if not path.is_file():
        pytest.skip(f"ground truth {path} is absent")
    return json.loads(path.read_text(encoding="utf-8"))


def vectors(key: str) -> list[Any]:
    """The upstream cases under ``key``, or one skipped case when the truth folder is absent."""
    if not VECTORS_FILE.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{VECTORS_FILE} is absent"))]
    cases: list[Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))[key]
    return cases


def examples(ref_streams: list[list[str | None]]) -> list[list[str]]:
    """Per-example reference lists from sacrebleu's streams refs[k][i]."""
    return [[ref for ref in refs if ref is not None] for refs in zip(*ref_streams, strict=True)]


def corpus_stats(spec: MetricSpec, hyps: list[str], ref_streams: list[list[str | None]]) -> np.ndarray:
    return chunk_statistics((spec,), (hyps,), examples(ref_streams))[0][0]


# -- sacrebleu upstream vectors ---------------------------------------------------------------


@pytest.mark.parametrize("case", vectors("corpus_bleu"))
def test_corpus_bleu_vectors(case: dict[str, Any]) -> None:
    kwargs = case["kwargs"]
    spec = BleuSpec(tokenize=kwargs.get("tokenize", "13a"), smooth_method=kwargs.get("smooth_method", "exp"))
    score = point_score(spec, corpus_stats(spec, case["hyps"], case["refs"])).score
    assert math.isclose(score, case["expected_bleu"], abs_tol=case["tol"])
    if set(kwargs) <= {"tokenize"}:
        report = generation_report(case["hyps"], examples(case["refs"]), tokenize=spec.tokenize, workers=1)
        assert math.isclose(report["bleu"].score, case["expected_bleu"], abs_tol=case["tol"])


@pytest.mark.parametrize("case", vectors("corpus_bleu_max_ngram_order"))
def test_max_ngram_order_vectors(case: dict[str, Any]) -> None:
    spec = BleuSpec(max_ngram_order=case["max_ngram_order"])
    stats = corpus_stats(spec, case["hyps"], case["refs"])
    assert f"{point_score(spec, stats).score:.2f}" == case["expected_bleu_2dp"]
    assert f"{bleu_arrays(stats.sum(axis=0), spec).score[0]:.2f}" == case["expected_bleu_2dp"]


def raw_bleu(smooth_value: float) -> BleuSpec:
    """The settings of sacrebleu's raw_corpus_bleu tests."""
    return BleuSpec(tokenize="none", smooth_method="floor", smooth_value=smooth_value, effective_order=True)


@pytest.mark.parametrize("case", vectors("raw_corpus_bleu"))
def test_raw_corpus_bleu_vectors(case: dict[str, Any]) -> None:
    spec = raw_bleu(case["smooth_value"])
    stats = corpus_stats(spec, case["hyps"], case["refs"])
    assert math.isclose(point_score(spec, stats).score / 100, case["expected_fraction"], abs_tol=case["tol"])
    assert math.isclose(
        bleu_arrays(stats.sum(axis=0), spec).score[0] / 100, case["expected_fraction"], abs_tol=1e-8
    )


@pytest.mark.parametrize("case", vectors("raw_corpus_bleu_offset"))
@pytest.mark.parametrize("floor", [0.1, 0.0])
def test_raw_corpus_bleu_offset_vectors(case: dict[str, Any], floor: float) -> None:
    spec = raw_bleu(floor)
    stats = corpus_stats(spec, case["hyps"], case["refs"])
    expected = case[f"expected_fraction_floor_{floor}"]
    assert math.isclose(bleu_arrays(stats.sum(axis=0), spec).score[0] / 100, expected, abs_tol=1e-8)


@pytest.mark.parametrize("case", vectors("bleu_ngram_statistics"))
def test_bleu_ngram_statistics_vectors(case: dict[str, Any]) -> None:
    stats = corpus_stats(BleuSpec(tokenize=case["tokenize"]), case["hyps"], case["refs"]).sum(axis=0)
    assert stats[2:6].tolist() == case["expected_counts(matches)"]
    assert stats[6:10].tolist() == case["expected_totals"]


@pytest.mark.parametrize("case", vectors("bleu_from_statistics"))
def test_bleu_from_statistics_vectors(case: dict[str, Any]) -> None:
    row = [case["sys_len"], case["ref_len"], *case["correct"], *case["total"]]
    assert math.isclose(
        bleu_arrays(np.array(row), BleuSpec()).score[0] / 100, case["expected_fraction"], abs_tol=1e-9
    )


@pytest.mark.parametrize("case", vectors("bleu_degenerate_floor"))
def test_bleu_degenerate_floor_vectors(case: dict[str, Any]) -> None:
    spec = BleuSpec(smooth_method="floor", smooth_value=case["floor_value"])
    row = [case["sys_len"], case["ref_len"], *case["correct"], *case["total"]]
    assert bleu_arrays(np.array(row), spec).score[0] / 100 == pytest.approx(
        case["expected_fraction"], abs=1e-9
    )


@pytest.mark.parametrize("case", vectors("sentence_bleu"))
def test_sentence_bleu_vectors(case: dict[str, Any]) -> None:
    spec = BleuSpec(
        tokenize=case["tokenize"],
        lowercase=case["lowercase"],
        smooth_method=case["smooth_method"],
        smooth_value=case["smooth_value"],
        effective_order=case["effective_order"],
    )
    stats = chunk_statistics((spec,), ([case["hyp"]],), [[case["ref"]]])[0][0]
    assert math.isclose(bleu_arrays(stats, spec).score[0], case["expected_bleu"], abs_tol=case["tol"])
    if case["smooth_method"] == "exp" and case["smooth_value"] is None:
        report = generation_report(
            [case["hyp"]],
            [case["ref"]],
            tokenize=spec.tokenize,
            lowercase=spec.lowercase,
            sentence_level=True,
            workers=1,
        )
        sentences = report["bleu"].sentence_scores
        assert sentences is not None and math.isclose(
            sentences[0], case["expected_bleu"], abs_tol=case["tol"]
        )


def chrf_spec(case: dict[str, Any]) -> ChrfSpec:
    return ChrfSpec(
        char_order=case["char_order"],
        word_order=case["word_order"],
        beta=case["beta"],
        eps_smoothing=case.get("eps_smoothing", False),
        whitespace=not case.get("remove_whitespace", True),
    )


CHRF_VECTORS = ("chrf_corpus_eps_smoothing", "chrf_corpus_effective_order", "chrf_keep_whitespace")


@pytest.mark.parametrize("case", [case for key in CHRF_VECTORS for case in vectors(key)])
def test_corpus_chrf_vectors(case: dict[str, Any]) -> None:
    spec = chrf_spec(case)
    stats = corpus_stats(spec, case["hyps"], case["refs"])
    assert math.isclose(point_score(spec, stats).score, case["expected"], abs_tol=case["tol"])
    assert math.isclose(chrf_scores(stats.sum(axis=0), spec)[0], case["expected"], abs_tol=case["tol"])


@pytest.mark.parametrize("case", vectors("chrf_sentence"))
def test_sentence_chrf_vectors(case: dict[str, Any]) -> None:
    spec = ChrfSpec(eps_smoothing=case["eps_smoothing"])
    stats = chunk_statistics((spec,), ([case["hyp"]],), [case["refs"]])[0][0]
    assert math.isclose(chrf_scores(stats, spec)[0], case["expected"], abs_tol=case["tol"])


@pytest.mark.parametrize("case", vectors("ter_corpus"))
def test_corpus_ter_vectors(case: dict[str, Any]) -> None:
    report = generation_report(case["hyps"], examples(case["refs"]), metrics=["ter"], workers=1)
    assert math.isclose(
        report["ter"].score, 100 * case["expected_fraction"], abs_tol=case["tol_on_0_100_scale"]
    )
    stats = corpus_stats(TerSpec(), case["hyps"], case["refs"])
    assert math.isclose(ter_scores(stats.sum(axis=0))[0], report["ter"].score, abs_tol=1e-9)


# -- WMT17 en-de: official scores of the original tools, and sacrebleu itself ------------------


@pytest.fixture(scope="module")
def wmt17() -> dict[str, Any]:
    data: dict[str, Any] = _load(WMT17_FILE)
    return data


def all_systems_stats(wmt17: dict[str, Any], spec: MetricSpec, names: list[str]) -> dict[str, np.ndarray]:
    """Every named system against the shared reference in one parallel extraction."""
    refs = [[ref] for ref in wmt17["reference"]]
    stats = extract_statistics([spec], [wmt17["systems"][name]["hyps"] for name in names], refs, workers=2)[0]
    return dict(zip(names, stats, strict=True))


def check_bleu_systems(wmt17: dict[str, Any], tokenize: str, official: str, names: list[str]) -> int:
    """heldout equals sacrebleu on each system, and the official score where there is one; returns their count."""
    spec = BleuSpec(tokenize=tokenize)
    sacre = BLEU(tokenize=tokenize, references=[wmt17["reference"]])
    checked = 0
    for name, stats in all_systems_stats(wmt17, spec, names).items():
        ours = point_score(spec, stats).score
        assert math.isclose(
            ours, sacre.corpus_score(wmt17["systems"][name]["hyps"], None).score, abs_tol=1e-9
        )
        expected = wmt17["systems"][name]["expected"][official]
        if expected is not None:
            assert abs(ours - expected) <= OFFICIAL_TOL + 1e-9, name
            checked += 1
    return checked


def test_wmt17_bleu_13a_all_systems_against_mteval_v13a(wmt17: dict[str, Any]) -> None:
    names = sorted(wmt17["systems"])
    assert len(names) == 16
    assert check_bleu_systems(wmt17, "13a", "bleu_mteval_v13a", names) == 16


def test_wmt17_bleu_intl_against_mteval_v14(wmt17: dict[str, Any]) -> None:
    """Official intl scores exist for one system; three more check equality with sacrebleu."""
    official = [n for n, s in wmt17["systems"].items() if s["expected"]["bleu_mteval_v14_intl"] is not None]
    others = sorted(set(wmt17["systems"]) - set(official))[:3]
    assert check_bleu_systems(wmt17, "intl", "bleu_mteval_v14_intl", official + others) == len(official) >= 1


@pytest.mark.parametrize(("word_order", "official"), [(0, "chrf_chrFpp_py"), (2, "chrfpp_chrFpp_py")])
def test_wmt17_chrf_where_given(wmt17: dict[str, Any], word_order: int, official: str) -> None:
    """chrF++.py averages per-order F-scores: sacrebleu's eps_smoothing=True."""
    names = sorted(n for n, s in wmt17["systems"].items() if s["expected"][official] is not None)
    assert names
    spec = ChrfSpec(word_order=word_order, eps_smoothing=True)
    sacre = CHRF(word_order=word_order, eps_smoothing=True, references=[wmt17["reference"]])
    for name, stats in all_systems_stats(wmt17, spec, names).items():
        ours = point_score(spec, stats).score
        assert abs(ours - wmt17["systems"][name]["expected"][official]) <= OFFICIAL_TOL, name
        assert math.isclose(
            ours, sacre.corpus_score(wmt17["systems"][name]["hyps"], None).score, abs_tol=1e-9
        )


def check_ter_systems(wmt17: dict[str, Any], names: list[str]) -> None:
    """heldout's TER equals tercom's official score on each named system."""
    for name, stats in all_systems_stats(wmt17, TerSpec(), names).items():
        ours = point_score(TerSpec(), stats).score
        assert (
            abs(ours - 100 * wmt17["systems"][name]["expected"]["ter_tercom_fraction"]) <= 100 * OFFICIAL_TOL
        ), name


def test_wmt17_ter_against_tercom(wmt17: dict[str, Any]) -> None:
    check_ter_systems(wmt17, list(TER_SYSTEMS))


@pytest.mark.slow
def test_wmt17_ter_all_systems_against_tercom(wmt17: dict[str, Any]) -> None:
    names = sorted(wmt17["systems"])
    assert len(names) == 16
    check_ter_systems(wmt17, names)


def test_wmt17_ter_equals_sacrebleu_on_a_sample(wmt17: dict[str, Any]) -> None:
    rng = np.random.default_rng(17)
    idx = np.sort(rng.choice(len(wmt17["reference"]), size=250, replace=False))
    refs = [wmt17["reference"][i] for i in idx]
    for name in sorted(wmt17["systems"])[:3]:
        hyps = [wmt17["systems"][name]["hyps"][i] for i in idx]
        ours = generation_report(hyps, refs, metrics=["ter"], workers=1)["ter"]
        metric = TER()
        assert math.isclose(ours.score, metric.corpus_score(hyps, [refs]).score, abs_tol=1e-9)
        assert ours.signature == str(metric.get_signature())
