"""What the heldout_accuracy/precision/recall/f1 evaluate modules share: declared inputs and docs.

The scores themselves come from ``metrics.classification.classification_report``, the service's core.
"""

import datasets
import evaluate


def _inputs(label: datasets.Value) -> datasets.Features:
    return datasets.Features({"predictions": label, "references": label})


# evaluate picks the first declaration an example encodes under. String comes first because
# Value("int64") would silently accept "1"; Value("string") rejects ints.
FEATURES = [
    _inputs(datasets.Value("string")),
    _inputs(datasets.Value("int64")),
    _inputs(datasets.List(datasets.Value("string"))),
    _inputs(datasets.List(datasets.Value("int64"))),
]

CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

INPUTS = """\
Args:
    predictions: one label (int or str) per example, or one list of labels per example (multilabel).
    references: same shape and label type as predictions.
    average: None, "binary", "micro", "macro" (default), "weighted" or "samples" (multilabel only).
    labels: labels to score, in order; may include labels absent from the data.
    pos_label: the positive label for average="binary" (default 1).
    zero_division: 0 (default), 1 or "nan": the score of an undefined ratio, as in scikit-learn.
Returns:
    {"<score>": float, or a list of per-label floats when average is None}.
Errors:
    metrics.errors.MetricInputError (a ValueError) for inconsistent inputs.
"""

# Options that do not change accuracy; accepted so that evaluate.combine can pass them to every module.
ACCURACY_IGNORES = ("average", "pos_label", "labels", "zero_division")


def metric_info(score: str, description: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        description=f"{description} Same computation as heldout's /v1/metrics/classification, "
        "matching scikit-learn exactly.",
        citation=CITATION,
        inputs_description=INPUTS.replace("<score>", score),
        features=FEATURES,
        reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
    )
