"""Classification paired tests against a naive oracle that resamples examples and calls scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from metrics.errors import MetricInputError
from metrics.significance import compare_classification


def systems(n: int, seed: int, acc_a: float, acc_b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    noise = rng.integers(0, 3, (2, n))
    base = np.where(rng.random(n) < acc_a, truth, noise[0])
    cand = np.where(rng.random(n) < acc_b, truth, noise[1])
    return truth, base, cand


def naive_paired_bootstrap_p(truth, base, cand, score, n_resamples: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    """sacrebleu's definition, computed the slow way: resample indices, call the scorer on each resample."""
    rng = np.random.default_rng(seed)
    observed = abs(score(truth, cand) - score(truth, base))
    diffs = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(truth), len(truth))
        diffs.append(abs(score(truth[idx], cand[idx]) - score(truth[idx], base[idx])))
    centred = np.asarray(diffs) - np.mean(diffs)
    return (int(np.sum(centred > observed)) + 1) / (n_resamples + 1)


@pytest.mark.parametrize(("acc_a", "acc_b"), [(0.7, 0.74), (0.7, 0.72)])
def test_p_values_match_a_naive_sklearn_bootstrap(acc_a: float, acc_b: float) -> None:
    truth, base, cand = systems(600, 1, acc_a, acc_b)
    n = 400

    def macro_f1(t, p):  # type: ignore[no-untyped-def]
        return f1_score(t, p, average="macro")

    oracle = {
        "accuracy": naive_paired_bootstrap_p(truth, base, cand, accuracy_score, n, 7),
        "f1": naive_paired_bootstrap_p(truth, base, cand, macro_f1, n, 7),
    }
    ours = compare_classification(truth.tolist(), base.tolist(), cand.tolist(), n_resamples=n, seed=3)
    for metric, expected in oracle.items():
        result = ours[metric]
        # Two independent Monte-Carlo estimates of the same p: allow 4 binomial standard errors of the difference.
        tolerance = 4 * np.sqrt(2 * expected * (1 - expected) / n) + 2 / n
        assert abs(result.p_value - expected) <= tolerance, (metric, result.p_value, expected)
    assert ours["accuracy"].baseline == accuracy_score(truth, base)
    assert ours["f1"].candidate == f1_score(truth, cand, average="macro")
    assert ours["f1"].delta == pytest.approx(ours["f1"].candidate - ours["f1"].baseline)


def test_clear_difference_is_significant_and_identical_systems_are_not() -> None:
    truth, base, cand = systems(5000, 2, 0.6, 0.8)
    for test in ("paired_bootstrap", "approximate_randomization"):
        clear = compare_classification(truth.tolist(), base.tolist(), cand.tolist(), test=test, n_resamples=500)
        assert clear["f1"].p_value < 0.01 and clear["accuracy"].p_value < 0.01
        same = compare_classification(truth.tolist(), base.tolist(), base.tolist(), test=test, n_resamples=500)
        assert same["f1"].p_value == 1.0


def test_candidate_interval_covers_its_score() -> None:
    truth, base, cand = systems(3000, 3, 0.7, 0.75)
    result = compare_classification(truth.tolist(), base.tolist(), cand.tolist(), n_resamples=500)["f1"]
    assert result.candidate_interval.low < result.candidate < result.candidate_interval.high


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"average": None}, "average"),
        ({"metrics": ["bleu"]}, "metrics"),
        ({"test": "t-test"}, "test"),
        ({"candidate": [0, 1]}, "references"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    args = {"references": [0, 1, 2], "baseline": [0, 1, 1], "candidate": [0, 2, 2], **kwargs}
    with pytest.raises(MetricInputError) as error:
        compare_classification(args.pop("references"), args.pop("baseline"), args.pop("candidate"), **args)
    assert error.value.field == field
    assert field in str(error.value) or next(iter(kwargs)) in str(error.value)
