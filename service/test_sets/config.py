"""Per-test-set scoring and protection settings, fixed at upload like the set itself.

Scoring options are fixed per set, not per request: a ladder compares submissions on one metric
definition, and letting callers vary it would hand them a fresh, unprotected score each time.
"""

from dataclasses import asdict, dataclass
from typing import Any

from service.tasks import Task
from service.test_sets.errors import UploadInvalid

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
GENERATION_METRICS = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match")
METRICS = {Task.classification: CLASSIFICATION_METRICS, Task.generation: GENERATION_METRICS}
DEFAULT_LADDER_METRIC = {Task.classification: "f1", Task.generation: "bleu"}
LOWER_IS_BETTER = frozenset({"ter"})
# Full scale of each metric: the ladder's step is a fraction of it.
SCALE = {name: 1.0 for name in CLASSIFICATION_METRICS} | {name: 100.0 for name in GENERATION_METRICS}
AVERAGES = ("macro", "micro", "weighted", "binary", "samples")
ROUGE_TOKENIZERS = ("default", "whitespace")
DEFAULT_RATING_SCALE = (1.0, 5.0)


@dataclass(frozen=True)
class SetConfig:
    average: str | None
    """Classification only: how precision, recall and F1 average over labels."""
    pos_label: int | str | None
    daily_budget: int | None
    """Scored submissions per key per UTC day; None for no limit."""
    ladder: bool
    ladder_metric: str
    ladder_step: float
    """Reported scores are rounded to this fraction of the metric's scale (0.01: one point)."""
    ladder_alpha: float
    """A submission replaces the key's best only when a paired test gives p below this."""
    rouge_tokenize: str = "default"
    """Generation only: rouge-score's tokenizer (English) or whitespace splitting."""
    rouge_stemmer: bool = False
    rating_scale: tuple[float, float] | None = None
    """Generation only: the lowest and highest human rating of an output."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SetConfig":
        """Sets stored before an option existed get its default."""
        scale = data.get("rating_scale")
        return cls(**{**data, "rating_scale": None if scale is None else (float(scale[0]), float(scale[1]))})

    @property
    def ratings(self) -> tuple[float, float]:
        """The human rating scale of a generation set (sets stored before it existed: 1-5)."""
        return self.rating_scale or DEFAULT_RATING_SCALE

    @property
    def mode(self) -> str:
        return "ladder" if self.ladder else "open"


@dataclass(frozen=True)
class ConfigForm:
    """The optional upload form fields, as sent."""

    average: str | None = None
    pos_label: str | None = None
    daily_budget: int | None = None
    ladder: bool = False
    ladder_metric: str | None = None
    ladder_step: float = 0.01
    ladder_alpha: float = 0.05
    rouge_tokenize: str | None = None
    rouge_stemmer: bool | None = None
    rating_scale: tuple[float, float] | None = None


def check_form(task: Task, form: ConfigForm) -> None:
    """Checks that need no data, so a bad form fails before the file is read."""
    problems: list[tuple[str, str]] = []
    if form.ladder_metric is not None and form.ladder_metric not in METRICS[task]:
        problems.append(("ladder_metric", f"must be one of {', '.join(METRICS[task])} for {task} sets"))
    if task is Task.generation and (form.average is not None or form.pos_label is not None):
        problems.append(("average", "average and pos_label apply to classification sets only"))
    if form.average is not None and form.average not in AVERAGES:
        problems.append(("average", f"must be one of {', '.join(AVERAGES)}"))
    if form.pos_label is not None and form.average != "binary":
        problems.append(("pos_label", "pos_label needs average=binary"))
    for name in ("rouge_tokenize", "rouge_stemmer", "rating_scale"):
        if task is Task.classification and getattr(form, name) is not None:
            problems.append((name, "applies to generation sets only"))
    if form.rouge_tokenize is not None and form.rouge_tokenize not in ROUGE_TOKENIZERS:
        problems.append(("rouge_tokenize", f"must be one of {', '.join(ROUGE_TOKENIZERS)}"))
    if form.rouge_stemmer and form.rouge_tokenize == "whitespace":
        problems.append(("rouge_stemmer", "applies to the default ROUGE tokenizer only"))
    if form.rating_scale is not None and not form.rating_scale[0] < form.rating_scale[1]:
        problems.append(("rating_scale", "must be [lowest, highest] with lowest < highest"))
    if problems:
        field, _ = problems[0]
        raise UploadInvalid(field, [(None, f"{name}: {message}") for name, message in problems])


def build_config(task: Task, form: ConfigForm, labels: list[Any], multilabel: bool) -> SetConfig:
    """The set's config once its labels are known (binary and samples averages depend on them)."""
    check_form(task, form)
    average: str | None = None
    pos_label: int | str | None = None
    if task is Task.classification:
        average = form.average or "macro"
        if average == "samples" and not multilabel:
            raise UploadInvalid("average", [(None, "average: samples needs multilabel records")])
        if average == "binary":
            if multilabel or len(labels) > 2:
                raise UploadInvalid("average", [(None, "average: binary needs single labels, at most two of them")])
            pos_label = _pos_label(form.pos_label, labels)
    return SetConfig(
        average=average,
        pos_label=pos_label,
        daily_budget=form.daily_budget,
        ladder=form.ladder,
        ladder_metric=form.ladder_metric or DEFAULT_LADDER_METRIC[task],
        ladder_step=form.ladder_step,
        ladder_alpha=form.ladder_alpha,
        rouge_tokenize=form.rouge_tokenize or "default",
        rouge_stemmer=bool(form.rouge_stemmer),
        rating_scale=(form.rating_scale or DEFAULT_RATING_SCALE) if task is Task.generation else None,
    )


def _pos_label(given: str | None, labels: list[Any]) -> int | str:
    if given is None:
        if 1 in labels or len(labels) < 2:
            return 1
        raise UploadInvalid("pos_label", [(None, "pos_label: required with average=binary unless 1 is a label")])
    for label in labels:
        if str(label) == given:
            return label
    raise UploadInvalid("pos_label", [(None, "pos_label: not one of the set's labels")])
