"""heldout's corpus chrF / chrF++ as an `evaluate` module, keeping sacrebleu's signature."""

from typing import Any

import evaluate

import metrics.evaluate_modules._generation_common as common

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    url = "https://aclanthology.org/W15-3049",
}
"""


class HeldoutChrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info(
            "Corpus chrF (word_order=0) or chrF++ (word_order=2) equal to sacrebleu's, with its signature.",
            _CITATION,
            "    word_order: 0 for chrF, 2 for chrF++.\n    lowercase: compute case-insensitive chrF.\n",
            "name, score, signature, and sentence_scores / interval when asked.",
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
        return common.compute(
            "chrf",
            predictions,
            references,
            chrf_word_order=word_order,
            lowercase=lowercase,
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )
