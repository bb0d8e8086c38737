"""ERASER's faithfulness measures (DeYoung et al., 2020) of word attributions, through the model itself.

For each k in 10, 20 and 50%, the ceil(k × words) words with the highest attributions are deleted
(comprehensiveness: how much the target's probability drops) or kept alone (sufficiency: how much it drops
then); each is averaged over the three k. Random comprehensiveness deletes as many words drawn at random
(``RANDOM_DRAWS`` draws per k from ``seed``), which is what an explanation has to beat. Deleting a word
removes its tokens; special tokens stay. Only words that have tokens count.
"""

import math
from collections.abc import Sequence

import numpy as np

from service.explanations.classifier_model import ClassifierModel
from service.explanations.results import Faithfulness
from service.explanations.tokens import TokenizedText

FRACTIONS = (0.1, 0.2, 0.5)
RANDOM_DRAWS = 5


def top_count(fraction: float, words: int) -> int:
    return min(words, max(1, math.ceil(fraction * words)))


def ranked_words(text: TokenizedText, word_attributions: Sequence[float]) -> list[int]:
    """Words that have tokens, highest attribution first (earlier words first among equals)."""
    return sorted(text.features(), key=lambda word: -word_attributions[word])


def _row(text: TokenizedText, words: set[int], keep: bool) -> list[int]:
    """``text``'s ids with only the tokens of ``words`` kept (``keep``) or with theirs deleted."""
    return [
        token
        for token, word in zip(text.ids, text.word_of, strict=True)
        if word < 0 or (word in words) == keep
    ]


def faithfulness(
    model: ClassifierModel,
    texts: Sequence[TokenizedText],
    word_attributions: Sequence[Sequence[float]],
    targets: Sequence[int],
    seed: int,
) -> list[Faithfulness]:
    """The three measures for each input, from one batch of deleted and kept rows per input."""
    rng = np.random.default_rng(seed)
    rows: list[list[int]] = []
    layout = []
    for text, attributions in zip(texts, word_attributions, strict=True):
        ranked = ranked_words(text, attributions)
        start = len(rows)
        rows.append(text.ids)
        for fraction in FRACTIONS:
            top = set(ranked[: top_count(fraction, len(ranked))])
            rows += [_row(text, top, keep=False), _row(text, top, keep=True)]
        for fraction in FRACTIONS:
            for _ in range(RANDOM_DRAWS):
                chosen = rng.choice(ranked, size=top_count(fraction, len(ranked)), replace=False)
                rows.append(_row(text, {int(w) for w in chosen}, keep=False))
        layout.append(start)
    probabilities = model.row_probabilities(rows)
    model.passes.release()
    results = []
    for start, target in zip(layout, targets, strict=True):
        p = probabilities[start : start + 1 + 2 * len(FRACTIONS) + RANDOM_DRAWS * len(FRACTIONS), target].tolist()
        full, paired, random = p[0], p[1 : 1 + 2 * len(FRACTIONS)], p[1 + 2 * len(FRACTIONS) :]
        results.append(
            Faithfulness(
                comprehensiveness=full - float(np.mean(paired[0::2])),
                sufficiency=full - float(np.mean(paired[1::2])),
                random_comprehensiveness=full - float(np.mean(random)),
            )
        )
    return results
