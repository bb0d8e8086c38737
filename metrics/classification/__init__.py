"""Classification metrics computed from counts, matching scikit-learn exactly.

Semantics follow scikit-learn >= 1.3 ``precision_recall_fscore_support``, ``accuracy_score``,
``confusion_matrix`` and ``multilabel_confusion_matrix``: label order, ``labels`` subsets and
supersets, ``pos_label`` rules for ``average="binary"``, ``zero_division`` (F is 0, not
``zero_division``, when only one of precision and recall is undefined) and NaN-skipping averages.

Inputs are encoded (``encoding``), reduced to counts (``counts``), scored by count formulas vectorised
over bootstrap resamples (``scores``) and assembled into a report (``report``).
"""

from metrics.classification.counts import ConfusionMatrix
from metrics.classification.encoding import MAX_LABELS, Encoded, Examples, encode, label_codes
from metrics.classification.report import (
    IMBALANCE_SHARE,
    SCORE_NAMES,
    ClassificationReport,
    MajorityBaseline,
    PerClass,
    classification_report,
    to_dict,
)
from metrics.classification.scores import (
    Scores,
    prf_from_counts,
    scores_from_confusion,
    scores_from_patterns,
    zero_division_value,
)

__all__ = [
    "IMBALANCE_SHARE",
    "MAX_LABELS",
    "SCORE_NAMES",
    "ClassificationReport",
    "ConfusionMatrix",
    "Encoded",
    "Examples",
    "MajorityBaseline",
    "PerClass",
    "Scores",
    "classification_report",
    "encode",
    "label_codes",
    "prf_from_counts",
    "scores_from_confusion",
    "scores_from_patterns",
    "to_dict",
    "zero_division_value",
]
