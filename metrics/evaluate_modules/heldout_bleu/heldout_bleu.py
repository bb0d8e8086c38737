"""heldout's corpus BLEU as an `evaluate` module: sacrebleu's score, keeping sacrebleu's signature.

The Hub's ``sacrebleu`` module drops the signature that says how the score was computed; this one
returns it, and computes through the same parallel core as the service.
"""

from dataclasses import asdict
from typing import Any

import datasets
import evaluate

from metrics.generation import generation_report

_DESCRIPTION = "Corpus BLEU equal to sacrebleu's, with its reproducibility signature."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of hypothesis strings.
    references: one reference string, or a list of reference strings, per prediction.
    tokenize: sacrebleu BLEU tokenizer ('13a', 'intl', 'zh', 'char' or 'none').
    lowercase: compute case-insensitive BLEU.
    sentence_level: also return per-segment scores (sentence BLEU with effective order).
    n_resamples: bootstrap resamples for a percentile interval (0: none).
    confidence_level: interval level.
    seed: bootstrap seed.
    workers: processes for statistics extraction (default: all CPUs).
Returns:
    score, signature, precisions, bp, sys_len, ref_len, and sentence_scores / interval when asked.
"""

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HeldoutBleu(evaluate.Metric):
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
        tokenize: str = "13a",
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
            metrics=("bleu",),
            tokenize=tokenize,
            lowercase=lowercase,
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )["bleu"]
        return {key: value for key, value in asdict(score).items() if value is not None}
