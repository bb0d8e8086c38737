"""heldout's corpus BLEU as an `evaluate` module, keeping sacrebleu's signature."""

from typing import Any

import evaluate

import metrics.evaluate_modules._generation_common as common

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
}
"""


class HeldoutBleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return common.metric_info(
            "Corpus BLEU equal to sacrebleu's, with its reproducibility signature.",
            _CITATION,
            "    tokenize: sacrebleu BLEU tokenizer ('13a', 'intl', 'zh', 'char' or 'none').\n"
            "    lowercase: compute case-insensitive BLEU.\n",
            "score, signature, precisions, bp, sys_len, ref_len, and sentence_scores / interval when asked.",
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
        return common.compute(
            "bleu",
            predictions,
            references,
            tokenize=tokenize,
            lowercase=lowercase,
            sentence_level=sentence_level,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
            workers=workers,
        )
