"""heldout's corpus TER as an `evaluate` module, keeping sacrebleu's signature.

Settings are sacrebleu's TER defaults (case-insensitive, no normalisation), as the signature states."""

from typing import Any

import evaluate

import metrics.evaluate_modules._generation_common as common

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


class HeldoutTer(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info(
            "Corpus TER (x100) equal to sacrebleu's default TER, with its signature.",
            _CITATION,
            "",
            "name, score, signature, and sentence_scores / interval when asked.",
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
        return common.compute(
            "ter",
            predictions,
            references,
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )
