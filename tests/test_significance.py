"""Paired tests against sacrebleu.significance.PairedTest, and the generic primitives on their own."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from metrics.bootstrap import make_rng
from metrics.errors import MetricInputError
from metrics.significance import (
    PairedResult,
    approximate_randomization,
    compare_generation,
    p_value,
    paired_bootstrap,
)

WMT17_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "truth" / "wmt17_en_de_systems.json"
N = 1000
SEGMENTS = 500
SACREBLEU_SEED = 12345
TESTS = {"paired_bootstrap": "bs", "approximate_randomization": "ar"}
# Pairs whose p-values on the first 500 segments are moderate (0.1-0.4), where disagreement would show.
PAIRS = [
    ("newstest2017.xmu.4910.en-de", "newstest2017.SYSTRAN.4847.en-de"),
    ("newstest2017.xmu.4910.en-de", "newstest2017.KIT.4950.en-de"),
    ("newstest2017.LIUM-NMT.4900.en-de", "newstest2017.online-B.0.en-de"),
]


@cache
def _wmt17() -> dict[str, Any]:
    if not WMT17_FILE.is_file():
        pytest.skip(f"ground truth {WMT17_FILE} is absent")
    data: dict[str, Any] = json.loads(WMT17_FILE.read_text(encoding="utf-8"))
    return data


def pair(names: tuple[str, str]) -> tuple[list[str], list[str], list[str]]:
    data = _wmt17()
    base, cand = (data["systems"][name]["hyps"][:SEGMENTS] for name in names)
    return data["reference"][:SEGMENTS], base, cand


def sacrebleu_p_values(
    refs: list[str], base: list[str], cand: list[str], test: str, monkeypatch: pytest.MonkeyPatch, seed: int
) -> dict[str, float]:
    monkeypatch.setenv("SACREBLEU_SEED", str(seed))
    paired = PairedTest(
        [("base", base), ("cand", cand)], {"BLEU": BLEU(), "chrF": CHRF()}, [refs], TESTS[test], N
    )
    _, scores = paired()
    results: dict[str, Any] = {"bleu": scores["BLEU"][1], "chrf": scores["chrF2"][1]}
    return {name: float(result.p_value) for name, result in results.items()}


def monte_carlo_tolerance(p: float, n: int = N) -> float:
    """Four standard errors of the difference of two independent n-sample estimates, plus one count each."""
    return 4 * math.sqrt(2 * max(p, 1 / n) * (1 - p) / n) + 2 / (n + 1)


@pytest.mark.parametrize("test", list(TESTS))
@pytest.mark.parametrize("names", PAIRS)
def test_p_values_agree_with_sacrebleu_within_monte_carlo_error(
    names: tuple[str, str], test: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs, base, cand = pair(names)
    theirs = sacrebleu_p_values(refs, base, cand, test, monkeypatch, seed=SACREBLEU_SEED)
    ours = compare_generation(refs, base, cand, metrics=["bleu", "chrf"], test=test, n_resamples=N, seed=7)
    for name, p in theirs.items():
        assert 0.02 < p < 0.98  # not pinned to an end, where agreement would be trivial
        assert abs(ours[name].p_value - p) <= monte_carlo_tolerance(p), (name, ours[name].p_value, p)


@pytest.mark.parametrize("test", list(TESTS))
def test_same_seed_reproduces_sacrebleus_resamples(test: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded like sacrebleu, the draws are sacrebleu's; it sums bootstrap statistics in float32, so a
    score within rounding of the threshold may count differently: allow two resamples."""
    refs, base, cand = pair(PAIRS[0])
    theirs = sacrebleu_p_values(refs, base, cand, test, monkeypatch, seed=SACREBLEU_SEED)
    ours = compare_generation(
        refs, base, cand, metrics=["bleu", "chrf"], test=test, n_resamples=N, seed=SACREBLEU_SEED
    )
    for name, p in theirs.items():
        assert abs(ours[name].p_value - p) <= 2 / (N + 1), (name, ours[name].p_value, p)


def test_signature_matches_sacrebleu_paired_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    refs, base, cand = pair(PAIRS[0])
    monkeypatch.setenv("SACREBLEU_SEED", str(SACREBLEU_SEED))
    signatures, _ = PairedTest(
        [("b", base[:50]), ("c", cand[:50])], {"BLEU": BLEU()}, [refs[:50]], "bs", 100
    )()
    ours = compare_generation(refs[:50], base[:50], cand[:50], n_resamples=100, seed=SACREBLEU_SEED)
    assert ours["bleu"].signature == str(signatures["BLEU"])


# -- synthetic pairs --------------------------------------------------------------------------


VOCAB = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "road", "big", "small", "red", ".", ","]


def references(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, size=int(rng.integers(5, 15)))) for _ in range(n)]


def degrade(refs: list[str], error_rate: float, seed: int) -> list[str]:
    """A system output: each reference token replaced by a random word with probability error_rate."""
    rng = np.random.default_rng(seed)
    return [
        " ".join(str(rng.choice(VOCAB)) if rng.random() < error_rate else t for t in ref.split())
        for ref in refs
    ]


@pytest.mark.parametrize("test", list(TESTS))
def test_clear_difference_is_significant(test: str) -> None:
    refs = references(400, seed=1)
    worse, better = degrade(refs, 0.4, seed=2), degrade(refs, 0.1, seed=3)
    results = compare_generation(
        refs, worse, better, metrics=["bleu", "chrf", "ter"], test=test, n_resamples=500
    )
    for name, result in results.items():
        assert result.p_value == 1 / 501, name
        assert (result.delta < 0) if name == "ter" else (result.delta > 0)
        interval, baseline = result.candidate_interval, result.baseline_interval
        assert interval.low <= result.candidate <= interval.high
        assert baseline.low <= result.baseline <= baseline.high
        assert interval.low > baseline.high or interval.high < baseline.low


@pytest.mark.parametrize("test", list(TESTS))
def test_identical_systems_are_not_significant(test: str) -> None:
    refs = references(300, seed=2)
    hyps = degrade(refs, 0.3, seed=3)
    result = compare_generation(refs, hyps, list(hyps), metrics=["bleu", "chrf"], test=test, n_resamples=300)
    for name in ("bleu", "chrf"):
        assert result[name].delta == 0.0
        assert result[name].p_value == 1.0


@pytest.mark.parametrize("test", list(TESTS))
def test_nearly_identical_systems_have_large_p_like_sacrebleu(
    test: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = references(300, seed=3)
    base, other = degrade(refs, 0.3, seed=4), degrade(refs, 0.3, seed=5)
    cand = [o if i % 10 == 0 else b for i, (b, o) in enumerate(zip(base, other, strict=True))]
    theirs = sacrebleu_p_values(refs, base, cand, test, monkeypatch, seed=99)
    ours = compare_generation(refs, base, cand, metrics=["bleu", "chrf"], test=test, n_resamples=N, seed=3)
    for name, p in theirs.items():
        assert ours[name].p_value > 0.05
        assert abs(ours[name].p_value - p) <= monte_carlo_tolerance(p)


def test_results_are_seeded_and_serialisable() -> None:
    refs = references(200, seed=5)
    base, cand = degrade(refs, 0.3, seed=6), degrade(refs, 0.25, seed=7)
    first = compare_generation(refs, base, cand, metrics=["bleu", "ter"], n_resamples=200, seed=11)
    again = compare_generation(refs, base, cand, metrics=["bleu", "ter"], n_resamples=200, seed=11)
    assert first == again
    result = first["bleu"]
    assert (
        isinstance(result, PairedResult) and result.test == "paired_bootstrap" and result.n_resamples == 200
    )
    assert dataclasses.asdict(result)["candidate_interval"]["level"] == 0.95
    assert math.isclose(result.delta, result.candidate - result.baseline)


# -- generic primitives -----------------------------------------------------------------------


def accuracy(sums: np.ndarray) -> np.ndarray:
    """A classification-style score from summed [correct, count] rows."""
    with np.errstate(invalid="ignore"):
        result: np.ndarray = sums[:, 0] / sums[:, 1]
    return result


def accuracy_rows(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return np.column_stack([rng.random(n) < rate, np.ones(n)]).astype(np.int64)


@pytest.mark.parametrize("test", [paired_bootstrap, approximate_randomization])
def test_multiplicity_is_the_same_test_as_expanded_rows(test: Any) -> None:
    """Grouping identical examples into one row with a multiplicity must not change the test's law."""
    rows_b = np.array([[1, 1], [0, 1], [1, 1], [0, 1]])
    rows_c = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    counts = np.array([40, 14, 6, 40])
    expanded_b, expanded_c = np.repeat(rows_b, counts, axis=0), np.repeat(rows_c, counts, axis=0)
    grouped = test(rows_b, rows_c, accuracy, 4000, make_rng(1), multiplicity=counts)
    expanded = test(expanded_b, expanded_c, accuracy, 4000, make_rng(2))
    assert (grouped.baseline, grouped.candidate) == (expanded.baseline, expanded.candidate) == (0.46, 0.54)
    assert abs(grouped.p_value - expanded.p_value) <= monte_carlo_tolerance(expanded.p_value, 4000)
    assert 0.01 < expanded.p_value < 0.5
    for column in range(2):
        low, high = np.quantile(grouped.samples[:, column], [0.05, 0.95])
        low_x, high_x = np.quantile(expanded.samples[:, column], [0.05, 0.95])
        assert abs(low - low_x) <= 0.02 and abs(high - high_x) <= 0.02


def test_primitives_are_exact_for_a_one_row_pair() -> None:
    """With one example, every bootstrap resample is that example and every swap is a sign flip."""
    base, cand = np.array([[0, 1]]), np.array([[1, 1]])
    boot = paired_bootstrap(base, cand, accuracy, 50, make_rng(0))
    assert np.array_equal(boot.samples, np.tile([0.0, 1.0], (50, 1)))
    assert boot.p_value == 1 / 51  # centred null is identically zero, below the observed 1
    swaps = approximate_randomization(base, cand, accuracy, 50, make_rng(0))
    assert set(map(tuple, swaps.samples.tolist())) <= {(0.0, 1.0), (1.0, 0.0)}
    assert swaps.p_value == 1 / 51  # |a - b| is always 1, never strictly above the observed 1


def test_p_value_drops_undefined_resamples() -> None:
    assert p_value(np.array([0.5, np.nan, 2.0, np.nan]), 1.0) == 2 / 3
    assert p_value(np.array([0.5, 2.0]), 0.0) == 1.0
    assert math.isnan(p_value(np.array([1.0]), float("nan")))


def test_primitives_reject_mismatched_rows() -> None:
    with pytest.raises(MetricInputError) as info:
        paired_bootstrap(np.ones((3, 2)), np.ones((4, 2)), accuracy, 10, make_rng(0))
    assert info.value.field == "candidate"
    with pytest.raises(MetricInputError) as info:
        approximate_randomization(
            np.ones((3, 2)), np.ones((3, 2)), accuracy, 10, make_rng(0), np.array([1, -1, 2])
        )
    assert info.value.field == "multiplicity"


# -- bad input --------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "references": ["a b c", "d e"],
    "baseline": ["a b", "d"],
    "candidate": ["a b c", "d e"],
}
BAD_INPUTS = [
    ({"candidate": ["a b c"]}, "candidate"),
    ({"references": ["a b c"]}, "references"),
    ({"baseline": ["a", None]}, "baseline"),
    ({"candidate": [1, "x"]}, "candidate"),
    ({"references": ["a", ["b", 2]]}, "references"),
    ({"test": "t_test"}, "test"),
    ({"n_resamples": 0}, "n_resamples"),
    ({"n_resamples": 100, "max_resamples": 99}, "n_resamples"),
    ({"max_segments": 1}, "baseline"),
    ({"metrics": ["rouge"]}, "metrics"),
    ({"tokenize": "ko-mecab"}, "tokenize"),
    ({"chrf_word_order": 3}, "chrf_word_order"),
    ({"confidence_level": 0}, "confidence_level"),
    ({"seed": -1}, "seed"),
]


@pytest.mark.parametrize(("override", "field"), BAD_INPUTS)
def test_bad_input_names_the_field(override: dict[str, Any], field: str) -> None:
    kwargs = {**GOOD, **override}
    with pytest.raises(MetricInputError) as info:
        compare_generation(
            kwargs.pop("references"), kwargs.pop("baseline"), kwargs.pop("candidate"), **kwargs
        )
    assert info.value.field == field
