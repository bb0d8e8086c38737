"""metrics.classification against scikit-learn as the oracle, plus its published test cases.

Random inputs come from hypothesis; every score is compared with sklearn to 1e-12 (NaN == NaN).
"""

import json
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

from metrics.classification import (
    ClassificationReport,
    classification_report,
    label_codes,
    scores_from_confusion,
    scores_from_patterns,
    to_dict,
)
from metrics.errors import MetricInputError

TRUTH = Path(__file__).resolve().parents[1].parent / "shared" / "truth" / "sklearn_classification_cases.json"
ZERO_DIVISIONS: list[int | str] = [0, 1, "nan", "warn"]
HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(actual: Any, expected: Any, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=0, atol=atol, equal_nan=True
    )


def sklearn_zd(zero_division: int | str) -> float | str:
    return np.nan if zero_division == "nan" else zero_division


def sklearn_prf(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return precision_recall_fscore_support(*args, **kwargs)


def raises_like(oracle: Callable[[], Any], ours: Callable[[], Any]) -> tuple[Any, Any] | None:
    """Both raise (None) or both return (the pair); a one-sided error fails the test."""
    try:
        expected = oracle()
    except ValueError:
        with pytest.raises(MetricInputError):
            ours()
        return None
    return expected, ours()


# ---------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------

INT_POOL: list[Any] = [-3, 0, 1, 2, 5, 7, 40]
STR_POOL: list[Any] = ["a", "b", "cat", "dog", "Z", "émile", "10", "9"]
POOLS = [INT_POOL, STR_POOL]


@st.composite
def single_label_case(draw: st.DrawFn) -> dict[str, Any]:
    pool = draw(st.sampled_from(POOLS))
    used = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
    n = draw(st.integers(1, 40))
    refs = draw(st.lists(st.sampled_from(used), min_size=n, max_size=n))
    preds = draw(st.lists(st.sampled_from(used), min_size=n, max_size=n))
    labels = draw(st.none() | st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    average = draw(st.sampled_from([None, "binary", "micro", "macro", "weighted"]))
    pos_label = draw(st.sampled_from([1, *used, pool[0]]))
    return {
        "refs": refs,
        "preds": preds,
        "labels": labels,
        "average": average,
        "pos_label": pos_label,
        "zero_division": draw(st.sampled_from(ZERO_DIVISIONS)),
    }


@st.composite
def multilabel_case(draw: st.DrawFn) -> dict[str, Any]:
    pool = draw(st.sampled_from(POOLS))
    used = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
    n = draw(st.integers(1, 30))
    label_set = st.lists(st.sampled_from(used), max_size=4)
    refs = draw(st.lists(label_set, min_size=n, max_size=n))
    preds = draw(st.lists(label_set, min_size=n, max_size=n))
    labels = draw(st.none() | st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    return {
        "refs": refs,
        "preds": preds,
        "labels": labels,
        "average": draw(st.sampled_from([None, "micro", "macro", "weighted", "samples"])),
        "zero_division": draw(st.sampled_from(ZERO_DIVISIONS)),
    }


def report_of(case: dict[str, Any], **overrides: Any) -> ClassificationReport:
    kwargs: dict[str, Any] = {k: case[k] for k in ("labels", "average", "zero_division") if k in case}
    if "pos_label" in case:
        kwargs["pos_label"] = case["pos_label"]
    return classification_report(case["preds"], case["refs"], **{**kwargs, **overrides})


def report_labels(case: dict[str, Any]) -> list[Any]:
    return case["labels"] if case["labels"] is not None else sorted(set(case["refs"]) | set(case["preds"]))


# ---------------------------------------------------------------------------------------------------
# Single-label
# ---------------------------------------------------------------------------------------------------


@HYPOTHESIS
@given(single_label_case())
def test_single_label_matches_sklearn(case: dict[str, Any]) -> None:
    refs, preds, zd = case["refs"], case["preds"], sklearn_zd(case["zero_division"])
    pair = raises_like(
        lambda: sklearn_prf(
            refs,
            preds,
            average=case["average"],
            labels=case["labels"],
            pos_label=case["pos_label"],
            zero_division=zd,
        ),
        lambda: report_of(case),
    )
    if pair is None:
        return
    (precision, recall, f1, _), report = pair
    assert_same(report.precision, precision)
    assert_same(report.recall, recall)
    assert_same(report.f1, f1)
    assert report.accuracy == accuracy_score(refs, preds)
    assert report.support == len(refs)

    labels = report_labels(case)
    assert report.labels == labels
    per_p, per_r, per_f, per_s = sklearn_prf(refs, preds, average=None, labels=labels, zero_division=zd)
    assert list(report.per_class) == [str(label) for label in labels]
    assert_same([c.precision for c in report.per_class.values()], per_p)
    assert_same([c.recall for c in report.per_class.values()], per_r)
    assert_same([c.f1 for c in report.per_class.values()], per_f)
    assert [c.support for c in report.per_class.values()] == per_s.tolist()

    assert not isinstance(report.confusion_matrix, dict)
    assert report.confusion_matrix.labels == labels
    if set(labels) & set(refs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's note on a 1 x 1 matrix
            expected = confusion_matrix(refs, preds, labels=labels)
        assert report.confusion_matrix.matrix == expected.tolist()
    else:  # sklearn refuses; with no scored reference every row is empty
        assert not np.any(report.confusion_matrix.matrix)


@HYPOTHESIS
@given(single_label_case())
def test_majority_baseline_is_a_constant_predictor(case: dict[str, Any]) -> None:
    refs, labels = case["refs"], case["labels"] or []
    counts = Counter(refs)
    order = labels + sorted(set(refs) - set(labels))
    majority = next(label for label in order if counts[label] == max(counts.values()))
    constant = [majority] * len(refs)
    zd = sklearn_zd(case["zero_division"])
    pair = raises_like(
        lambda: sklearn_prf(
            refs,
            case["preds"],
            average=case["average"],
            labels=case["labels"],
            pos_label=case["pos_label"],
            zero_division=zd,
        ),
        lambda: report_of(case),
    )
    if pair is None:
        return
    report = pair[1]
    _, _, f1, _ = sklearn_prf(
        refs,
        constant,
        average=case["average"],
        labels=report_labels(case),
        pos_label=case["pos_label"],
        zero_division=zd,
    )
    assert report.majority_baseline.label == majority
    assert report.majority_baseline.accuracy == accuracy_score(refs, constant)
    assert_same(report.majority_baseline.f1, f1)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_numpy_arrays_equal_lists(dtype: type) -> None:
    rng = np.random.default_rng(3)
    refs: np.ndarray = rng.integers(0, 6, 300).astype(dtype)
    preds: np.ndarray = rng.integers(0, 6, 300).astype(dtype)
    from_arrays = to_dict(classification_report(preds, refs, average="weighted"))
    assert from_arrays == to_dict(classification_report(preds.tolist(), refs.tolist(), average="weighted"))


def test_sparse_int_labels_take_the_sort_path() -> None:
    refs = [10**15, -(10**15), 3, 3, 10**15]
    preds = [3, -(10**15), 10**15, 3, 3]
    report = classification_report(preds, refs, average=None)
    p, r, f, s = sklearn_prf(refs, preds, average=None)
    assert report.labels == [-(10**15), 3, 10**15]
    assert_same(report.precision, p)
    assert_same(report.f1, f)


def test_bool_labels() -> None:
    refs, preds = [True, False, True, True], [True, True, False, True]
    report = classification_report(preds, refs, average="binary", pos_label=True)
    p, r, f, _ = sklearn_prf(refs, preds, average="binary", pos_label=True)
    assert report.labels == [False, True]
    assert (report.precision, report.recall, report.f1) == (p, r, f)


# ---------------------------------------------------------------------------------------------------
# Multilabel
# ---------------------------------------------------------------------------------------------------


def binarized(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Indicator matrices over present labels + extra requested labels, and the scored column indices.

    An empty last column keeps sklearn from reading a one-label matrix as a binary column vector.
    """
    present = sorted({label for row in case["refs"] + case["preds"] for label in row})
    classes = present + [label for label in case["labels"] or [] if label not in present]
    binarizer = MultiLabelBinarizer(classes=classes)
    true, pred = (
        np.pad(m, ((0, 0), (0, 1))) for m in (binarizer.fit_transform(case["refs"]), binarizer.transform(case["preds"]))
    )
    scored = case["labels"] or present
    return true, pred, [classes.index(label) for label in scored]


@HYPOTHESIS
@given(multilabel_case())
def test_multilabel_matches_sklearn(case: dict[str, Any]) -> None:
    if not any(case["refs"] + case["preds"]) and case["labels"] is None:
        with pytest.raises(MetricInputError) as error:
            report_of(case)
        assert error.value.field == "references"
        return
    true, pred, scored = binarized(case)
    zd = sklearn_zd(case["zero_division"])
    report = report_of(case)
    precision, recall, f1, _ = sklearn_prf(true, pred, average=case["average"], labels=scored, zero_division=zd)
    assert_same(report.precision, precision)
    assert_same(report.recall, recall)
    assert_same(report.f1, f1)
    assert report.accuracy == accuracy_score(true, pred)

    labels = report_labels_multilabel(case)
    assert report.labels == labels
    per_p, per_r, per_f, per_s = sklearn_prf(true, pred, average=None, labels=scored, zero_division=zd)
    assert_same([c.f1 for c in report.per_class.values()], per_f)
    assert_same([c.precision for c in report.per_class.values()], per_p)
    assert [c.support for c in report.per_class.values()] == per_s.tolist()
    expected_mcm = multilabel_confusion_matrix(true, pred, labels=scored).tolist()
    assert report.confusion_matrix == {str(label): m for label, m in zip(labels, expected_mcm, strict=True)}


@pytest.mark.parametrize("n_labels", [3, 32, 40])
def test_multilabel_wide_label_sets(n_labels: int) -> None:
    """Patterns wider than 64 bits take a different unique-row path; both must match sklearn."""
    rng = np.random.default_rng(n_labels)
    true, pred = rng.random((300, n_labels)) < 0.2, rng.random((300, n_labels)) < 0.2
    true[:100], pred[:50] = true[100:200], true[100:150]  # repeated patterns, some exact matches
    refs = [np.flatnonzero(row).tolist() for row in true]
    preds = [np.flatnonzero(row).tolist() for row in pred]
    labels = list(range(n_labels))
    for average in ("macro", "samples"):
        report = classification_report(preds, refs, average=average, labels=labels, n_resamples=20)
        assert_same(report.f1, sklearn_prf(true, pred, average=average, zero_division=0)[2])
        assert report.accuracy == accuracy_score(true, pred)


def report_labels_multilabel(case: dict[str, Any]) -> list[Any]:
    return case["labels"] or sorted({label for row in case["refs"] + case["preds"] for label in row})


@HYPOTHESIS
@given(multilabel_case())
def test_multilabel_majority_baseline(case: dict[str, Any]) -> None:
    if case["labels"] is None and not any(case["refs"] + case["preds"]):
        return
    report = report_of(case)
    counts = Counter(frozenset(row) for row in case["refs"])
    top = max(counts.values())
    assert frozenset(report.majority_baseline.label) in {s for s, c in counts.items() if c == top}
    constant_case = {
        **case,
        "preds": [list(report.majority_baseline.label)] * len(case["refs"]),
        "labels": report_labels_multilabel(case),
    }
    true, pred, scored = binarized(constant_case)
    _, _, f1, _ = sklearn_prf(
        true, pred, average=case["average"], labels=scored, zero_division=sklearn_zd(case["zero_division"])
    )
    assert report.majority_baseline.accuracy == top / len(case["refs"])
    assert_same(report.majority_baseline.f1, f1)


# ---------------------------------------------------------------------------------------------------
# Published scikit-learn cases
# ---------------------------------------------------------------------------------------------------


def truth_cases() -> list[dict[str, Any]]:
    if not TRUTH.is_file():
        return []
    return json.loads(TRUTH.read_text())["cases"]


def numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return float("nan") if value == "nan" else value


@pytest.mark.parametrize("case", truth_cases(), ids=lambda case: case["id"])
def test_published_sklearn_cases(case: dict[str, Any]) -> None:
    # Conventions (the file's "conventions" key): p/r/f/s are precision_recall_fscore_support outputs,
    # dp is the decimals checked upstream (None: 7), "warn" scores as 0, "nan" is NaN; fbeta is not ours.
    refs, preds, labels = case["y_true"], case["y_pred"], case.get("labels")
    if isinstance(refs[0], list):  # indicator rows -> label lists; every column is a label
        refs = [[j for j, v in enumerate(row) if v] for row in refs]
        preds = [[j for j, v in enumerate(row) if v] for row in preds]
        labels = labels or list(range(len(case["y_true"][0])))
    for key, expected in case["expected"].items():
        average = None if key.startswith("None") else key
        zero_division = case.get("zero_division", "warn")
        if "without zero_division" in expected.get("note", ""):
            zero_division = "warn"
        report = classification_report(
            preds, refs, average=average, labels=expected.get("labels", labels), zero_division=zero_division
        )
        atol = 1.5 * 10 ** -(expected["dp"] if expected["dp"] is not None else 7)
        for short, name in (("p", "precision"), ("r", "recall"), ("f", "f1")):
            if short in expected:
                assert_same(getattr(report, name), numbers(expected[short]), atol=atol)
        if "s" in expected:
            assert [c.support for c in report.per_class.values()] == expected["s"]


def test_published_cases_present() -> None:
    if not TRUTH.is_file():
        pytest.skip(f"shared truth folder absent: {TRUTH.parent}")
    assert "conventions" in json.loads(TRUTH.read_text())
    assert len(truth_cases()) > 0


# ---------------------------------------------------------------------------------------------------
# Vectorised count functions and the bootstrap
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
def test_resampled_confusions_score_like_resampled_examples(average: str | None, zero_division: int | str) -> None:
    """A resample's confusion cells give sklearn's scores on the resampled examples themselves."""
    rng = np.random.default_rng(11)
    refs, preds = rng.integers(0, 5, 60), rng.integers(0, 5, 60)
    universe, codes = label_codes({"references": refs, "predictions": preds}, labels=[4, 0, 1, 2, 3, 9])
    k = len(universe)
    picks = rng.integers(0, 60, size=(25, 60))
    batch = np.stack(
        [np.bincount(codes["references"][i] * k + codes["predictions"][i], minlength=k * k) for i in picks]
    ).reshape(-1, k, k)
    scores = scores_from_confusion(batch, average, label_indices=[0, 1, 2, 5], zero_division=zero_division)
    for b, i in enumerate(picks):
        expected = sklearn_prf(
            refs[i], preds[i], average=average, labels=[4, 0, 1, 9], zero_division=sklearn_zd(zero_division)
        )
        for name, value in zip(("precision", "recall", "f1"), expected, strict=False):
            assert_same(scores[name][b], value)
        assert scores["accuracy"][b] == accuracy_score(refs[i], preds[i])


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted", "samples"])
def test_resampled_patterns_score_like_resampled_examples(average: str | None) -> None:
    rng = np.random.default_rng(5)
    true, pred = rng.random((50, 4)) < 0.3, rng.random((50, 4)) < 0.3
    patterns, inverse = np.unique(np.concatenate([true, pred], axis=1), axis=0, return_inverse=True)
    picks = rng.integers(0, 50, size=(20, 50))
    counts = np.stack([np.bincount(inverse.ravel()[i], minlength=len(patterns)) for i in picks])
    scores = scores_from_patterns(patterns[:, :4], patterns[:, 4:], counts, average, label_indices=[3, 1])
    for b, i in enumerate(picks):
        expected = sklearn_prf(true[i], pred[i], average=average, labels=[3, 1], zero_division=0)
        for name, value in zip(("precision", "recall", "f1"), expected, strict=False):
            assert_same(scores[name][b], value)
        assert_same(scores["accuracy"][b], accuracy_score(true[i], pred[i]))


def test_intervals_are_seeded_and_bracket_the_estimate() -> None:
    rng = np.random.default_rng(2)
    refs = rng.integers(0, 3, 400)
    preds = np.where(rng.random(400) < 0.7, refs, rng.integers(0, 3, 400))
    first = classification_report(preds, refs, n_resamples=300, seed=7)
    assert (
        first.confidence_intervals == classification_report(preds, refs, n_resamples=300, seed=7).confidence_intervals
    )
    for name in ("accuracy", "precision", "recall", "f1"):
        interval = first.confidence_intervals[name]
        assert interval.low < getattr(first, name) < interval.high
        assert interval.level == 0.95
    assert classification_report(preds, refs).confidence_intervals == {}


def test_per_label_intervals_when_not_averaged() -> None:
    report = classification_report(["a", "b", "b", "a"], ["a", "b", "a", "a"], average=None, n_resamples=50)
    assert set(report.confidence_intervals) == {"accuracy"} | {
        f"{name}[{label}]" for name in ("precision", "recall", "f1") for label in ("a", "b")
    }


def test_multilabel_intervals() -> None:
    rng = np.random.default_rng(4)
    refs = [[j for j in range(4) if rng.random() < 0.4] for _ in range(200)]
    preds = [[j for j in range(4) if rng.random() < 0.4] for _ in range(200)]
    report = classification_report(preds, refs, average="samples", n_resamples=200)
    interval = report.confidence_intervals["f1"]
    assert isinstance(report.f1, float)
    assert interval.low < report.f1 < interval.high


# ---------------------------------------------------------------------------------------------------
# Warnings and errors
# ---------------------------------------------------------------------------------------------------


def test_warnings_name_the_problem() -> None:
    refs = ["ok"] * 97 + ["fraud"] * 3
    preds = ["ok"] * 95 + ["spam"] * 2 + ["ok"] * 3
    report = classification_report(preds, refs, labels=["fraud", "ok", "other"])
    text = "\n".join(report.warnings)
    assert "imbalanced: the majority class 'ok' is 97% of references" in text
    assert "labels in predictions but not in references: ['spam']" in text
    assert "in neither predictions nor references: ['other']" in text
    assert "not in labels (not scored" in text
    assert "precision is ill-defined (no predictions) for ['fraud', 'other']" in text
    assert report.majority_baseline.label == "ok"
    assert classification_report([0, 1], [1, 0]).warnings == []


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("length mismatch", {"predictions": [1, 2], "references": [1]}, "predictions"),
    ("empty", {"predictions": [], "references": []}, "predictions"),
    ("not a list", {"predictions": "abc", "references": ["a", "b", "c"]}, "predictions"),
    ("binary, three labels", {"average": "binary", "predictions": [0, 1, 2], "references": [0, 1, 1]}, "average"),
    ("unknown average", {"average": "mean"}, "average"),
    ("samples on single-label", {"average": "samples"}, "average"),
    ("binary on multilabel", {"average": "binary", "predictions": [[1], [0]], "references": [[0], []]}, "average"),
    ("int and str", {"predictions": [1, "1"], "references": [1, 1]}, "predictions"),
    ("str vs int inputs", {"predictions": ["0", "1"]}, "predictions"),
    ("bool and int", {"references": [True, 1]}, "references"),
    ("float labels", {"predictions": [0.5, 1.0]}, "predictions"),
    ("null label", {"references": [None, 1]}, "references"),
    ("null in a label list", {"predictions": [[1], [None]], "references": [[1], [0]]}, "predictions"),
    ("lists vs labels", {"predictions": [[0], [1]]}, "predictions"),
    ("lists and labels mixed", {"references": [[0], 1]}, "references"),
    ("too many resamples", {"n_resamples": 2000, "max_resamples": 1000}, "n_resamples"),
    ("negative resamples", {"n_resamples": -1}, "n_resamples"),
    ("confidence 1", {"confidence_level": 1.0}, "confidence_level"),
    ("confidence 0", {"confidence_level": 0}, "confidence_level"),
    ("pos_label absent", {"average": "binary", "pos_label": 2}, "pos_label"),
    ("pos_label type", {"average": "binary", "pos_label": "1"}, "pos_label"),
    ("zero_division 0.5", {"zero_division": 0.5}, "zero_division"),
    ("labels empty", {"labels": []}, "labels"),
    ("labels duplicated", {"labels": [0, 1, 0]}, "labels"),
    ("labels of another type", {"labels": ["0", "1"]}, "labels"),
    ("all label sets empty", {"predictions": [[], []], "references": [[], []]}, "references"),
    ("huge int", {"predictions": [2**70, 1]}, "predictions"),
]


@pytest.mark.parametrize(("kwargs", "field"), [(k, f) for _, k, f in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS])
def test_bad_input_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    call = {"predictions": [0, 1], "references": [1, 1], **kwargs}
    with pytest.raises(MetricInputError) as error:
        classification_report(call.pop("predictions"), call.pop("references"), **call)
    assert error.value.field == field
    assert error.value.message


def test_binary_with_one_present_label_and_absent_pos_label_scores_zero_division() -> None:
    for zero_division in ZERO_DIVISIONS:
        report = classification_report(["x", "x"], ["x", "x"], average="binary", zero_division=zero_division)
        expected = sklearn_prf(["x", "x"], ["x", "x"], average="binary", zero_division=sklearn_zd(zero_division))
        assert_same([report.precision, report.recall, report.f1], expected[:3])
        assert report.labels == ["x"]
