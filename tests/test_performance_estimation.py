"""Label-free performance estimation (CBPE) against scikit-learn's isotonic regression, a direct
implementation of NannyML's published algorithm, NannyML's own CBPE, and the realized accuracy under
covariate shift; and a label shift, which CBPE's assumption excludes, moving it off."""

import warnings
from typing import Any

import nannyml
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import f1_score

from metrics.performance_estimation import (
    PerformanceEstimator,
    estimate_performance,
    fit_estimator,
    fit_isotonic,
)

LABELS = ["a", "b", "c"]
# Three classes with unit-variance Gaussian inputs around these centres.
CENTRES = np.array([[1.5, 0.0], [-0.75, 1.3], [-0.75, -1.3]])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def bayes_logits(x: np.ndarray) -> np.ndarray:
    """log p(x | y) up to a constant: with equal priors, softmax of these is the true posterior."""
    return np.asarray(x @ CENTRES.T - 0.5 * (CENTRES**2).sum(axis=1))


def model(x: np.ndarray) -> np.ndarray:
    """An overconfident classifier biased against class a: probabilities that need calibrating."""
    return softmax(1.6 * bayes_logits(x) + np.array([-1.5, 0.75, 0.75]))


def traffic(rng: np.random.Generator, n: int, shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Covariate shift: inputs move by ``shift``; the label given an input stays the reference's posterior."""
    x = CENTRES[rng.integers(0, 3, n)] + rng.normal(0, 1, (n, 2)) + np.asarray(shift)
    cumulative = np.cumsum(softmax(bayes_logits(x)), axis=1)
    truth = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), 2)
    return model(x), truth


def label_shifted(rng: np.random.Generator, n: int, prior: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Label shift: class frequencies change, each class's inputs do not, so p(label | input) changes."""
    truth = rng.choice(3, n, p=prior)
    return model(CENTRES[truth] + rng.normal(0, 1, (n, 2))), truth


def realized_accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == truth).mean())


@pytest.mark.parametrize("seed", range(6))
def test_isotonic_fit_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    x = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties, as rounded probabilities have
    y = (rng.random(n) < x ** rng.uniform(0.3, 3)).astype(float)
    ours = fit_isotonic(x, y)
    oracle = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    grid = np.concatenate([np.linspace(-0.1, 1.1, 301), x])
    np.testing.assert_allclose(ours(grid), oracle.predict(grid), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.x, oracle.X_thresholds_, rtol=0, atol=0)
    np.testing.assert_allclose(ours.y, oracle.y_thresholds_, rtol=0, atol=1e-12)


def nannyml_algorithm(reference: tuple[np.ndarray, np.ndarray], analysis: np.ndarray) -> tuple[float, float]:
    """NannyML's published CBPE, written out with scikit-learn: isotonic maps fitted on the reference, per-class
    probabilities calibrated one-vs-rest and normalised, F1 from per-class expected TP, FP and FN; accuracy from
    the map of the predicted label's probability to correctness."""
    probabilities, truth = reference
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    accuracy_map = IsotonicRegression(out_of_bounds="clip").fit(confidence, predicted == truth)
    calibrated = np.column_stack(
        [
            IsotonicRegression(out_of_bounds="clip").fit(probabilities[:, k], truth == k).predict(analysis[:, k])
            for k in range(analysis.shape[1])
        ]
    )
    total = calibrated.sum(axis=1, keepdims=True)
    calibrated = np.divide(calibrated, total, out=np.full_like(calibrated, 1 / 3), where=total != 0)
    predicted = analysis.argmax(axis=1)
    f1s = []
    for k in range(analysis.shape[1]):
        tp = calibrated[predicted == k, k].sum()
        fp = (1 - calibrated[predicted == k, k]).sum()
        fn = calibrated[predicted != k, k].sum()
        f1s.append(tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else 0.0)
    return float(accuracy_map.predict(analysis.max(axis=1)).mean()), float(np.mean(f1s))


@pytest.mark.parametrize("seed", range(4))
def test_estimates_equal_nannymls_published_algorithm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = traffic(rng, 2000)
    analysis, _ = traffic(rng, 1500, shift=(0.8, -0.4))
    estimator = fit_estimator(LABELS, *reference)
    estimate = estimate_performance(estimator, analysis, n_draws=50)
    accuracy, f1 = nannyml_algorithm(reference, analysis)
    assert estimate.accuracy.value == pytest.approx(accuracy, abs=1e-12)
    assert estimate.f1.value == pytest.approx(f1, abs=1e-12)
    again = estimate_performance(PerformanceEstimator.from_json(estimator.to_json()), analysis, n_draws=50)
    assert again == estimate  # only the fitted maps are stored, and they are enough


def frame(probabilities: np.ndarray, truth: np.ndarray | None = None) -> pd.DataFrame:
    data: dict[str, Any] = {f"p_{label}": probabilities[:, k] for k, label in enumerate(LABELS)}
    data["y_pred"] = [LABELS[k] for k in probabilities.argmax(axis=1)]
    if truth is not None:
        data["y_true"] = [LABELS[k] for k in truth]
    return pd.DataFrame(data)


def test_against_nannymls_cbpe_on_the_same_reference_and_analysis_data() -> None:
    rng = np.random.default_rng(0)
    reference = traffic(rng, 5000)
    analysis, truth = traffic(rng, 5000, shift=(1.0, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbpe = nannyml.CBPE(
            y_pred_proba={label: f"p_{label}" for label in LABELS},
            y_pred="y_pred",
            y_true="y_true",
            metrics=["accuracy", "f1"],
            chunk_number=1,
            problem_type="classification_multiclass",
        )
        cbpe.fit(frame(*reference))
        results = cbpe.estimate(frame(analysis)).to_df()
    analysed = results[results[("chunk", "period")] == "analysis"].iloc[0]
    ours = estimate_performance(fit_estimator(LABELS, *reference), analysis)
    # NannyML calibrated every class here (its cross-validated check keeps a class uncalibrated otherwise), so its
    # F1 is ours exactly. Its accuracy averages the normalised per-class probability of the predicted label; ours
    # maps the predicted label's probability straight to correctness: two estimates of one quantity.
    assert ours.f1.value == pytest.approx(analysed[("f1", "value")], abs=1e-9)
    assert ours.accuracy.value == pytest.approx(analysed[("accuracy", "value")], abs=0.01)
    realized_f1 = f1_score(truth, analysis.argmax(axis=1), average="macro")
    assert abs(ours.f1.value - realized_f1) < 0.03
    assert abs(ours.accuracy.value - realized_accuracy(analysis, truth)) < 0.03


def test_tracks_realized_accuracy_on_disjoint_traffic_and_under_covariate_shift() -> None:
    rng = np.random.default_rng(2)
    estimator = fit_estimator(LABELS, *traffic(rng, 4000))
    for shift in ((0.0, 0.0), (1.0, 0.5), (-1.0, 1.0), (1.5, -1.5)):
        analysis, truth = traffic(rng, 3000, shift)
        estimate = estimate_performance(estimator, analysis)
        realized = realized_accuracy(analysis, truth)
        assert abs(estimate.accuracy.value - realized) < 0.025, shift
        assert estimate.accuracy.low <= estimate.accuracy.value <= estimate.accuracy.high
        assert estimate.accuracy.low - 0.01 <= realized <= estimate.accuracy.high + 0.01, shift
        realized_f1 = f1_score(truth, analysis.argmax(axis=1), average="macro")
        assert abs(estimate.f1.value - realized_f1) < 0.03, shift


def test_a_label_shift_moves_the_estimate_off() -> None:
    """p(label | input) changes under label shift: the reference's calibration no longer holds."""
    rng = np.random.default_rng(0)
    estimator = fit_estimator(LABELS, *label_shifted(rng, 4000, [1 / 3] * 3))
    same, same_truth = label_shifted(rng, 3000, [1 / 3] * 3)
    assert abs(estimate_performance(estimator, same).accuracy.value - realized_accuracy(same, same_truth)) < 0.02
    shifted, truth = label_shifted(rng, 3000, [0.9, 0.05, 0.05])
    estimate = estimate_performance(estimator, shifted)
    assert estimate.accuracy.value - realized_accuracy(shifted, truth) > 0.05
    assert realized_accuracy(shifted, truth) < estimate.accuracy.low  # and the interval does not save it


def test_the_interval_is_the_bernoulli_spread_of_the_calibrated_probabilities() -> None:
    """Accuracy's interval matches the normal approximation of a sum of Bernoulli variables (Lyapunov CLT)."""
    rng = np.random.default_rng(4)
    estimator = fit_estimator(LABELS, *traffic(rng, 3000))
    analysis, _ = traffic(rng, 2000, (0.5, 0.5))
    estimate = estimate_performance(estimator, analysis, n_draws=4000, seed=1)
    confidence = np.clip(estimator.accuracy(analysis.max(axis=1)), 0, 1)
    sd = np.sqrt((confidence * (1 - confidence)).sum()) / len(confidence)
    z = norm.ppf(0.975)
    assert estimate.accuracy.low == pytest.approx(confidence.mean() - z * sd, abs=0.003)
    assert estimate.accuracy.high == pytest.approx(confidence.mean() + z * sd, abs=0.003)
    assert estimate.f1.low < estimate.f1.value < estimate.f1.high
    with pytest.raises(ValueError, match="probability matrix"):
        estimate_performance(estimator, analysis[:, :2])
