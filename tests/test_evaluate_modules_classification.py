"""The heldout_* classification modules load offline through `evaluate` and agree with the core and sklearn."""

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from metrics.classification import classification_report
from metrics.evaluate_modules import module_path

NAMES = ["heldout_accuracy", "heldout_precision", "heldout_recall", "heldout_f1"]
SCORES = ["accuracy", "precision", "recall", "f1"]

rng = np.random.default_rng(9)
INT_REFS = rng.integers(0, 4, 80).tolist()
INT_PREDS = rng.integers(0, 4, 80).tolist()
NAMES_OF = ["cat", "dog", "emu", "yak"]
STR_REFS = [NAMES_OF[i] for i in INT_REFS]
STR_PREDS = [NAMES_OF[i] for i in INT_PREDS]
ML_REFS = [[NAMES_OF[j] for j in range(4) if rng.random() < 0.35] for _ in range(60)]
ML_PREDS = [[NAMES_OF[j] for j in range(4) if rng.random() < 0.35] for _ in range(60)]


@pytest.fixture(scope="module")
def modules() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
            patch.setenv(variable, "1")
        import evaluate

        patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        return {name: evaluate.load(module_path(name)) for name in NAMES}


def sklearn_scores(refs: list[Any], preds: list[Any], **kwargs: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = precision_recall_fscore_support(refs, preds, **kwargs)
    return {"accuracy": accuracy_score(refs, preds), "precision": p, "recall": r, "f1": f}


CASES = [
    ("int", INT_PREDS, INT_REFS, {"average": "macro"}),
    ("int-weighted-labels", INT_PREDS, INT_REFS, {"average": "weighted", "labels": [3, 1, 7]}),
    ("str-per-class", STR_PREDS, STR_REFS, {"average": None, "zero_division": 1}),
    ("str-binary", ["cat", "dog", "dog"], ["dog", "dog", "cat"], {"average": "binary", "pos_label": "dog"}),
    ("multilabel-samples", ML_PREDS, ML_REFS, {"average": "samples"}),
    ("multilabel-micro", ML_PREDS, ML_REFS, {"average": "micro"}),
]


@pytest.mark.parametrize(("preds", "refs", "options"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_modules_equal_core_and_sklearn(
    modules: dict[str, Any], preds: list[Any], refs: list[Any], options: dict[str, Any]
) -> None:
    report = classification_report(preds, refs, **options)
    if isinstance(refs[0], list):
        binarizer = MultiLabelBinarizer().fit(refs + preds)
        expected = sklearn_scores(binarizer.transform(refs), binarizer.transform(preds), **options)
    else:
        expected = sklearn_scores(refs, preds, **options)
    for name, score in zip(NAMES, SCORES, strict=True):
        result = modules[name].compute(predictions=preds, references=refs, **options)
        assert result == {score: getattr(report, score)}
        np.testing.assert_allclose(result[score], expected[score], rtol=0, atol=1e-12)


def test_combine(modules: dict[str, Any]) -> None:
    import evaluate

    combined = evaluate.combine(list(modules.values()))
    result = combined.compute(predictions=STR_PREDS, references=STR_REFS, average="weighted")
    report = classification_report(STR_PREDS, STR_REFS, average="weighted")
    assert result == {score: getattr(report, score) for score in SCORES}


def test_bad_input_surfaces_as_value_error(modules: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="average='binary' needs at most two labels"):
        modules["heldout_f1"].compute(predictions=[0, 1, 2], references=[0, 1, 2], average="binary")
