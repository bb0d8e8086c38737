"""Multilabel paired tests: resampled scores against materialised resamples scored by scikit-learn.

The per-example statistic rows go through the unweighted paired bootstrap, which makes the generator
calls of a materialised resample (``test_bootstrap_sums``), so each resample's score must equal
sklearn's on those examples. The grouped test behind ``compare_classification`` is checked against a
naive bootstrap that resamples examples and calls sklearn, within Monte Carlo error.
"""

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from metrics.bootstrap import make_rng
from metrics.errors import MetricInputError
from metrics.significance import (
    compare_classification,
    multilabel_score_fn,
    multilabel_statistics,
    paired_bootstrap,
)

TAGS = ["a", "b", "c", "d", "e"]
SCORED = [1, 0, 2, 3]  # sklearn label indices of labels=["b", "a", "c", "d"]; "e" counts in accuracy only


def indicators(n: int, seed: int, keep: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """References and two systems as (n, 5) indicators; a system keeps each reference bit with prob. keep."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n, len(TAGS))) < 0.3
    systems = []
    for flip_rate in (1 - keep, 1 - keep - 0.08):
        flips = rng.random((n, len(TAGS))) < flip_rate / 3
        systems.append(truth ^ flips)
    return truth, systems[0], systems[1]


def as_lists(matrix: np.ndarray) -> list[list[str]]:
    return [[TAGS[j] for j in np.flatnonzero(row)] for row in matrix]


def sklearn_score(truth: np.ndarray, pred: np.ndarray, metric: str, average: str, zero_division: Any = 0) -> float:
    if metric == "accuracy":
        return float(accuracy_score(truth, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = precision_recall_fscore_support(
            truth, pred, average=average, labels=SCORED, zero_division=zero_division
        )
    return float({"precision": p, "recall": r, "f1": f}[metric])


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "samples"])
@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1"])
def test_resampled_scores_equal_sklearn_on_materialised_resamples(average: str, metric: str) -> None:
    truth, base, cand = indicators(120, seed=1, keep=0.8)
    # sklearn's own indicator column order is TAGS; scored labels are given by index into it.
    scored = np.array(SCORED)
    rows_b = multilabel_statistics(truth, base, scored, average, 0.0)
    rows_c = multilabel_statistics(truth, cand, scored, average, 0.0)
    score = multilabel_score_fn(metric, len(SCORED), average, 0.0)
    outcome = paired_bootstrap(rows_b, rows_c, score, 60, make_rng(4))
    draws = np.random.default_rng(4).integers(0, len(truth), size=(60, len(truth)))
    for resample, idx in enumerate(draws):
        expected = [sklearn_score(truth[idx], system[idx], metric, average) for system in (base, cand)]
        np.testing.assert_allclose(outcome.samples[resample], expected, rtol=0, atol=1e-12)
    assert outcome.baseline == pytest.approx(sklearn_score(truth, base, metric, average), abs=1e-12)


def test_undefined_per_example_scores_are_skipped_like_sklearn() -> None:
    """average='samples' with zero_division='nan': examples with no labels drop out of the mean."""
    truth, base, _ = indicators(80, seed=2, keep=0.7)
    rows = multilabel_statistics(truth, base, np.array(SCORED), "samples", float("nan"))
    for metric in ("precision", "recall", "f1"):
        ours = multilabel_score_fn(metric, len(SCORED), "samples", float("nan"))(rows.sum(axis=0))
        assert ours[0] == pytest.approx(sklearn_score(truth, base, metric, "samples", np.nan), abs=1e-12)


def naive_paired_bootstrap_p(
    truth: np.ndarray, base: np.ndarray, cand: np.ndarray, metric: str, average: str, n: int, seed: int
) -> float:
    """sacrebleu's definition the slow way: resample example indices, call sklearn on each resample."""
    rng = np.random.default_rng(seed)
    observed = abs(sklearn_score(truth, cand, metric, average) - sklearn_score(truth, base, metric, average))
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(truth), len(truth))
        diffs.append(
            abs(
                sklearn_score(truth[idx], cand[idx], metric, average)
                - sklearn_score(truth[idx], base[idx], metric, average)
            )
        )
    centred = np.asarray(diffs) - np.mean(diffs)
    return (int(np.sum(centred > observed)) + 1) / (n + 1)


@pytest.mark.parametrize("average", ["macro", "samples"])
def test_grouped_test_matches_a_naive_sklearn_bootstrap(average: str) -> None:
    truth, base, cand = indicators(400, seed=3, keep=0.8)
    n = 300
    results = compare_classification(
        as_lists(truth),
        as_lists(base),
        as_lists(cand),
        metrics=["accuracy", "f1"],
        average=average,
        labels=["b", "a", "c", "d"],
        n_resamples=n,
        seed=5,
    )
    for metric in ("accuracy", "f1"):
        expected = naive_paired_bootstrap_p(truth, base, cand, metric, average, n, seed=9)
        tolerance = 4 * np.sqrt(2 * max(expected, 1 / n) * (1 - expected) / n) + 2 / n
        result = results[metric]
        assert abs(result.p_value - expected) <= tolerance, (metric, result.p_value, expected)
        assert result.baseline == pytest.approx(sklearn_score(truth, base, metric, average), abs=1e-12)
        assert result.candidate == pytest.approx(sklearn_score(truth, cand, metric, average), abs=1e-12)
        interval = result.candidate_interval
        assert interval.low <= result.candidate <= interval.high


@pytest.mark.parametrize("test", ["paired_bootstrap", "approximate_randomization"])
def test_clear_difference_is_significant_and_identical_systems_are_not(test: str) -> None:
    truth, base, cand = indicators(3000, seed=4, keep=0.5)
    refs = as_lists(truth)
    clear = compare_classification(refs, as_lists(base), as_lists(truth), test=test, n_resamples=300)
    assert clear["f1"].p_value < 0.01 and clear["accuracy"].p_value < 0.01
    # Intervals describe each system (a bootstrap), not the shuffled pseudo-systems of the test.
    assert clear["accuracy"].candidate_interval.low == 1.0
    same = compare_classification(refs, as_lists(base), as_lists(base), test=test, n_resamples=300)
    assert same["f1"].p_value == 1.0 and same["f1"].delta == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"average": "binary"}, "average"),
        ({"baseline": ["a", "b"]}, "references"),
        ({"candidate": [["a"]]}, "references"),
        ({"references": [[], []], "baseline": [[], []], "candidate": [[], []]}, "references"),
    ],
)
def test_bad_multilabel_input_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    args = {"references": [["a"], ["b"]], "baseline": [["a"], []], "candidate": [["a", "b"], ["b"]], **kwargs}
    with pytest.raises(MetricInputError) as error:
        compare_classification(args.pop("references"), args.pop("baseline"), args.pop("candidate"), **args)
    assert error.value.field == field
