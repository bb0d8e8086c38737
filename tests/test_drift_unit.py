"""monitors/: drift with pinned methods against scipy, detection on shifted vs same-distribution data,
the embedding projection against scikit-learn's PCA, and online scores against scikit-learn."""

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, f1_score

from monitors import drift_config
from monitors.drift import DriftInputError, run_drift
from monitors.drift_config import DriftConfig
from monitors.drift_features import FeatureTable, LoggedPrediction, classifier_log_features
from monitors.online_accuracy import online_scores
from monitors.projection import SKETCH_DIM, EmbeddingSketch, Projection
from tests.monitoring_fixtures import synthetic_rows

START = datetime(2024, 1, 1, tzinfo=UTC)


def table(n: int, *, shifted: bool, seed: int) -> FeatureTable:
    rows = synthetic_rows(n, shifted=shifted, seed=seed, start=START)
    return FeatureTable.from_predictions(
        LoggedPrediction(r["features"], r["label"], r["score"], r["input_text"]) for r in rows
    )


@pytest.fixture(scope="module")
def reference() -> FeatureTable:
    return table(3000, shifted=False, seed=1)


@pytest.fixture(scope="module")
def projection(reference: FeatureTable) -> Projection:
    return Projection.fit(reference.sketches(), 4)


def test_method_tables_match_evidentlys_registry() -> None:
    from evidently.legacy.calculations import stattests
    from evidently.legacy.calculations.stattests.registry import StatTest

    registered = [v for v in vars(stattests).values() if isinstance(v, StatTest)]
    by_type = {
        kind: {s.name for s in registered if kind in {t.value for t in s.allowed_feature_types}}
        for kind in ("num", "cat", "text")
    }
    assert by_type["num"] == drift_config.NUMERIC_METHODS
    assert by_type["cat"] == drift_config.CATEGORICAL_METHODS
    assert by_type["text"] == drift_config.TEXT_METHODS


def test_same_distribution_is_not_drift(reference: FeatureTable, projection: Projection) -> None:
    outcome = run_drift(reference, table(2000, shifted=False, seed=2), projection, DriftConfig())
    assert [c.column for c in outcome.columns] == [
        "n_chars",
        "n_tokens",
        "unk_share",
        "confidence",
        "label",
        "text",
        "embedding",
    ]
    assert not any(c.drifted for c in outcome.columns), outcome.columns
    assert outcome.share_of_drifted_columns == 0 and not outcome.dataset_drift
    assert "<html" in outcome.html.lower() and "Embedding drift" in outcome.html


def test_shifted_traffic_is_drift(reference: FeatureTable, projection: Projection) -> None:
    outcome = run_drift(reference, table(2000, shifted=True, seed=3), projection, DriftConfig())
    assert all(c.drifted for c in outcome.columns), outcome.columns
    assert outcome.dataset_drift and outcome.share_of_drifted_columns == 1
    text = next(c for c in outcome.columns if c.column == "text")
    assert text.method == "abs_text_content_drift" and text.score > 0.9


@pytest.mark.parametrize("n_current", [300, 3000])
def test_pinned_methods_equal_scipy_whatever_the_window_size(reference: FeatureTable, n_current: int) -> None:
    """Evidently would switch from K-S to Wasserstein at 1,000 rows; pinned, each column keeps its method."""
    current = table(n_current, shifted=False, seed=4)
    config = DriftConfig(methods={"n_chars": "ks", "n_tokens": "wasserstein", "label": "chisquare"})
    outcome = run_drift(reference, current, None, config)
    scores = {c.column: c for c in outcome.columns}
    assert "embedding" not in scores  # no projection given
    ref_chars, cur_chars = np.array(reference.n_chars), np.array(current.n_chars)
    assert scores["n_chars"].method == "ks"
    assert scores["n_chars"].score == pytest.approx(stats.ks_2samp(ref_chars, cur_chars).pvalue, rel=1e-6)
    ref_tokens, cur_tokens = np.array(reference.n_tokens), np.array(current.n_tokens)
    normed = stats.wasserstein_distance(ref_tokens, cur_tokens) / np.std(ref_tokens)
    assert scores["n_tokens"].method == "wasserstein"
    assert scores["n_tokens"].score == pytest.approx(normed, rel=1e-6)
    assert scores["label"].method == "chisquare" and 0 <= scores["label"].score <= 1


def test_columns_without_data_are_left_out_and_nothing_in_common_is_an_error(reference: FeatureTable) -> None:
    lengths = ({"n_chars": 10 + i % 7} for i in range(200))
    bare = FeatureTable.from_predictions(LoggedPrediction(features, None, None, None) for features in lengths)
    outcome = run_drift(reference, bare, None, DriftConfig())
    assert [c.column for c in outcome.columns] == ["n_chars"]
    nothing = FeatureTable.from_predictions(LoggedPrediction({}, None, None, None) for _ in range(200))
    with pytest.raises(DriftInputError):
        run_drift(reference, nothing, None, DriftConfig())


def test_overrides_are_checked() -> None:
    drift_config.check_overrides({"n_chars": "ks", "label": "TVD", "embedding": "mmd"}, {"text": 0.6})
    for methods, thresholds in (({"n_chars": "chisquare"}, {}), ({"colour": "ks"}, {}), ({}, {"label": -1.0})):
        with pytest.raises(ValueError):
            drift_config.check_overrides(methods, thresholds)


def test_projection_matches_sklearn_pca_up_to_sign() -> None:
    data = np.random.default_rng(0).normal(size=(500, SKETCH_DIM)) * np.linspace(3, 0.2, SKETCH_DIM)
    ours = Projection.fit(data, 4)
    theirs = PCA(n_components=4).fit(data)
    mine, sk = ours.transform(data), theirs.transform(data)
    for i in range(4):
        assert np.allclose(mine[:, i], sk[:, i], atol=1e-8) or np.allclose(mine[:, i], -sk[:, i], atol=1e-8)
    restored = Projection.from_json(ours.to_json())
    assert np.array_equal(restored.transform(data), mine)


def test_sketch_is_fixed_and_small() -> None:
    pooled = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    first, second = EmbeddingSketch(32)(pooled), EmbeddingSketch(32)(pooled)
    assert first == second and len(first) == 3 and all(len(row) == SKETCH_DIM for row in first)


def test_log_features_and_round_trip() -> None:
    features = classifier_log_features(40, 10, 3, False, [0.5] * SKETCH_DIM)
    assert features == {"n_chars": 40, "n_tokens": 10, "unk_share": 0.3, "truncated": False, "embedding": [0.5] * 16}
    original = table(50, shifted=True, seed=5)
    assert FeatureTable.from_bytes(original.to_bytes()) == original


@pytest.mark.parametrize("seed", range(5))
def test_online_scores_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c", "d"][: 2 + seed % 3]
    predicted = rng.choice(labels, 300).tolist()
    actual = [p if rng.random() < 0.6 else str(rng.choice(labels + ["unseen"])) for p in predicted]
    pairs: dict[tuple[str, str], int] = {}
    for p, a in zip(predicted, actual, strict=True):
        pairs[(p, a)] = pairs.get((p, a), 0) + 1
    scores = online_scores(pairs)
    assert scores is not None and scores.n == 300
    assert scores.accuracy == pytest.approx(accuracy_score(actual, predicted), abs=1e-12)
    assert scores.f1 == pytest.approx(f1_score(actual, predicted, average="macro", zero_division=0), abs=1e-12)
    assert online_scores({}) is None
