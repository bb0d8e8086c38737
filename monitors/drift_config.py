"""What a drift check compares and how: its column names, the method and threshold pinned per column, and the
options of a check. Free of numpy, pandas and Evidently, so settings validation and the service's wiring can
import it without loading the computation.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

NUMERIC_COLUMNS = ("n_chars", "n_tokens", "unk_share", "confidence")
CATEGORICAL_COLUMNS = ("label",)
TEXT_COLUMNS = ("text",)
EMBEDDING_COLUMNS = ("embedding",)
ALL_COLUMNS = NUMERIC_COLUMNS + CATEGORICAL_COLUMNS + TEXT_COLUMNS + EMBEDDING_COLUMNS

# Distances rather than p-values by default: a distance does not shrink towards "drift" as windows grow.
DEFAULT_METHODS: dict[str, str] = {
    "n_chars": "wasserstein",
    "n_tokens": "wasserstein",
    "unk_share": "wasserstein",
    "confidence": "wasserstein",
    "label": "jensenshannon",
    "text": "abs_text_content_drift",
    "embedding": "model",
}
DEFAULT_THRESHOLDS: dict[str, float] = {
    "n_chars": 0.1,
    "n_tokens": 0.1,
    "unk_share": 0.1,
    "confidence": 0.1,
    "label": 0.1,
    "text": 0.55,
    "embedding": 0.55,
}
# Evidently's registered tests by the column types they accept (tests/test_drift_unit.py checks this table).
NUMERIC_METHODS = frozenset(
    {
        "anderson",
        "cramer_von_mises",
        "ed",
        "es",
        "hellinger",
        "jensenshannon",
        "kl_div",
        "ks",
        "mannw",
        "empirical_mmd",
        "psi",
        "t_test",
        "wasserstein",
    }
)
CATEGORICAL_METHODS = frozenset(
    {"chisquare", "fisher_exact", "g_test", "hellinger", "jensenshannon", "kl_div", "psi", "TVD", "z"}
)
TEXT_METHODS = frozenset({"abs_text_content_drift", "perc_text_content_drift"})
EMBEDDING_METHODS = frozenset({"model", "distance", "mmd", "ratio"})


def allowed_methods(column: str) -> frozenset[str]:
    if column in NUMERIC_COLUMNS:
        return NUMERIC_METHODS
    if column in CATEGORICAL_COLUMNS:
        return CATEGORICAL_METHODS
    if column in TEXT_COLUMNS:
        return TEXT_METHODS
    if column in EMBEDDING_COLUMNS:
        return EMBEDDING_METHODS
    raise ValueError(f"unknown drift column {column!r}; columns are {', '.join(ALL_COLUMNS)}")


def check_overrides(methods: Mapping[str, str], thresholds: Mapping[str, float]) -> None:
    """Raise ValueError naming the first unknown column or method not valid for its column."""
    for column, method in methods.items():
        allowed = allowed_methods(column)
        if method not in allowed:
            raise ValueError(f"method {method!r} does not apply to column {column!r}; use one of {sorted(allowed)}")
    for column, threshold in thresholds.items():
        allowed_methods(column)
        if threshold < 0:
            raise ValueError(f"threshold for {column!r} must not be negative")


@dataclass(frozen=True)
class DriftConfig:
    methods: Mapping[str, str] = field(default_factory=dict)
    """Overrides of DEFAULT_METHODS, by column."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    """The dataset drifts when at least this share of its columns drift."""
    text_sample: int = 2000
    embedding_sample: int = 5000
    seed: int = 0

    def method(self, column: str) -> str:
        return self.methods.get(column, DEFAULT_METHODS[column])

    def threshold(self, column: str) -> float:
        return self.thresholds.get(column, DEFAULT_THRESHOLDS[column])


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool
