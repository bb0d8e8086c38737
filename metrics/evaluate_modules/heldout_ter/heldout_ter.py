"""heldout's corpus TER as an `evaluate` module, keeping sacrebleu's signature.

The Hub's ``ter`` module drops the signature that says how the score was computed; this one
returns it, and computes through the same parallel core as the service. Settings are sacrebleu's
TER defaults (case-insensitive, no normalisation), as the signature states.
"""

from dataclasses import asdict
from typing import Any

import datasets
import evaluate

from metrics.generation import generation_report

_DESCRIPTION = "Corpus TER (x100) equal to sacrebleu's default TER, with its signature."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of hypothesis strings.
    references: one reference string, or a list of reference strings, per prediction.
    sentence_level: also return per-segment scores.
    n_resamples: bootstrap resamples for a percentile interval (0: none).
    confidence_level: interval level.
    seed: bootstrap seed.
    workers: processes for statistics extraction (default: all CPUs).
Returns:
    name, score, signature, and sentence_scores / interval when asked.
"""

_CITATION = """\
@inproceedings{snover-etal-2006-study,
    title = "A Study of Translation Edit Rate with Targeted Human Annotation",
    author = "Snover, Matthew and Dorr, Bonnie and Schwartz, Rich and Micciulla, Linnea
              and Makhoul, John",
    booktitle = "Proceedings of the 7th Conference of the Association for Machine Translation
                 in the Americas",
    year = "2006",
    url = "https://aclanthology.org/2006.amta-papers.25",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HeldoutTer(evaluate.Metric):
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
        sentence_level: bool = False,
        n_resamples: int = 0,
        confidence_level: float = 0.95,
        seed: int | None = 0,
        workers: int | None = None,
    ) -> dict[str, Any]:
        score = generation_report(
            predictions,
            references,
            metrics=("ter",),
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )["ter"]
        return {key: value for key, value in asdict(score).items() if value is not None}
