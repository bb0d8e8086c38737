"""heldout's corpus chrF / chrF++ as an `evaluate` module, keeping sacrebleu's signature.

The Hub's ``chrf`` module drops the signature that says how the score was computed; this one
returns it, and computes through the same parallel, memory-bounded core as the service.
"""

from dataclasses import asdict
from typing import Any

import datasets
import evaluate

from metrics.generation import generation_report

_DESCRIPTION = "Corpus chrF (word_order=0) or chrF++ (word_order=2) equal to sacrebleu's, with its signature."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of hypothesis strings.
    references: one reference string, or a list of reference strings, per prediction.
    word_order: 0 for chrF, 2 for chrF++.
    lowercase: compute case-insensitive chrF.
    sentence_level: also return per-segment scores.
    n_resamples: bootstrap resamples for a percentile interval (0: none).
    confidence_level: interval level.
    seed: bootstrap seed.
    workers: processes for statistics extraction (default: all CPUs).
Returns:
    name, score, signature, and sentence_scores / interval when asked.
"""

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    url = "https://aclanthology.org/W15-3049",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HeldoutChrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(
                            datasets.Value("string", id="sequence"), id="references"
                        ),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str] | list[list[str]],
        word_order: int = 0,
        lowercase: bool = False,
        sentence_level: bool = False,
        n_resamples: int = 0,
        confidence_level: float = 0.95,
        seed: int | None = 0,
        workers: int | None = None,
    ) -> dict[str, Any]:
        score = generation_report(
            predictions,
            references,
            metrics=("chrf",),
            chrf_word_order=word_order,
            lowercase=lowercase,
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )["chrf"]
        return {key: value for key, value in asdict(score).items() if value is not None}
