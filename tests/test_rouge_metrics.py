"""heldout's ROUGE against Google's rouge-score on generated text, exact match on written cases, and the
sentence-level BLEU warning."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest
from rouge_score import rouge_scorer
from rouge_score.scoring import Score
from rouge_score.tokenizers import Tokenizer

from metrics import generation_stats, lcs
from metrics.errors import MetricInputError
from metrics.exact_match import ExactMatchSpec, exact_match_statistics
from metrics.generation import SENTENCE_BLEU_WARNING, generation_report
from metrics.generation_stats import extract_statistics, shutdown_pools
from metrics.lcs import SequencePairs, lcs_lengths, lcs_positions
from metrics.rouge import ROUGE_TYPES, RougeSpec, rouge_statistics
from metrics.significance import compare_generation

# Inflections for the stemmer, digits, punctuation inside and around words, non-ASCII letters the
# default tokenizer drops (and two it keeps after lowercasing: the Kelvin sign and dotted capital I).
WORDS = [
    *["the", "cat", "cats", "sat", "sitting", "running", "runs", "ran", "dogs", "dog", "happily", "happiness"],
    *["generously", "agreed", "agreement", "x-ray", "U.S.A.", "it's", "don't", "42", "3.14", "1,000", "café"],
    *["naïve", "Straße", "über", "中文", "日本語", "Мир", "KELVIN\u212a", "İstanbul", "e-mail", "(hi)"],
]
GAPS = [" ", " ", " ", " ", "\n", ", ", ". \n", "  ", "\t", "\n\n", " - ", "\r\n"]


def text(rng: random.Random) -> str:
    """Empty, short, sentence-sized or long (past one and two 64-bit words), with newlines between some words."""
    n = rng.choice([0, 0, 1, 3, 8, 8, 15, 20, 70, 140])
    return "".join(rng.choice(WORDS) + rng.choice(GAPS) for _ in range(n)) + rng.choice(["", ".", "\n", " "])


def corpus(seed: int, n: int, max_refs: int) -> tuple[list[list[str]], list[list[str]]]:
    """Two systems and per-segment references; references often edit the first system's hypothesis."""
    rng = random.Random(seed)
    systems: list[list[str]] = [[text(rng) for _ in range(n)] for _ in range(2)]
    references = []
    for hyp in systems[0]:
        refs = []
        for _ in range(rng.randint(1, max_refs)):
            words = hyp.split(" ")
            edited = [w if rng.random() > 0.3 else rng.choice(WORDS) for w in words if rng.random() > 0.1]
            refs.append(" ".join(edited) if rng.random() < 0.7 else text(rng))
        references.append(refs)
    return systems, references


class Whitespace(Tokenizer):
    """The ``whitespace`` option as a rouge-score tokenizer."""

    def __init__(self, lowercase: bool) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()


def expected(
    scorer: rouge_scorer.RougeScorer, references: list[list[str]], hyps: Sequence[str]
) -> list[dict[str, Score]]:
    return [scorer.score_multi(refs, hyp) for refs, hyp in zip(references, hyps, strict=True)]


def assert_equal_to_rouge_score(
    specs: list[RougeSpec], stats: list[np.ndarray], theirs: list[list[dict[str, Score]]]
) -> None:
    """Every segment's [1, fmeasure, precision, recall] is rouge-score's, bit for bit."""
    for spec, array in zip(specs, stats, strict=True):
        for k, system in enumerate(theirs):
            want = np.array(
                [
                    [1.0, s[spec.rouge_type].fmeasure, s[spec.rouge_type].precision, s[spec.rouge_type].recall]
                    for s in system
                ]
            )
            mismatched = np.flatnonzero((array[k] != want).any(axis=1))
            assert mismatched.size == 0, (spec, k, mismatched[:5])


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score_with_multiple_references_and_newline_split_summaries(use_stemmer: bool) -> None:
    systems, references = corpus(seed=int(use_stemmer), n=300, max_refs=3)
    specs = [RougeSpec(rouge_type, use_stemmer=use_stemmer) for rouge_type in ROUGE_TYPES]
    stats = rouge_statistics(specs, systems, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    assert_equal_to_rouge_score(specs, stats, [expected(scorer, references, hyps) for hyps in systems])
    assert sum("\n" in ref.strip() for refs in references for ref in refs) > 100  # rougeLsum saw summaries


@pytest.mark.parametrize("lowercase", [False, True])
def test_whitespace_tokenizer_equals_rouge_score_with_a_split_tokenizer(lowercase: bool) -> None:
    systems, references = corpus(seed=7, n=200, max_refs=2)
    specs = [RougeSpec(rouge_type, tokenize="whitespace", lowercase=lowercase) for rouge_type in ROUGE_TYPES]
    stats = rouge_statistics(specs, systems, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=Whitespace(lowercase))
    assert_equal_to_rouge_score(specs, stats, [expected(scorer, references, hyps) for hyps in systems])


def test_whitespace_tokenizer_when_texts_hold_every_marker_character() -> None:
    """Texts holding all the control characters the fast path marks documents with go one at a time."""
    controls = "".join(chr(c) for c in (*range(0x01, 0x09), *range(0x0E, 0x1C)))
    hyps = [f"a{controls} b c\nd e", "x y", ""]
    references = [[f"a{controls} c\nd"], ["y x"], ["z"]]
    specs = [RougeSpec(rouge_type, tokenize="whitespace") for rouge_type in ROUGE_TYPES]
    stats = rouge_statistics(specs, [hyps], references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=Whitespace(False))
    assert_equal_to_rouge_score(specs, stats, [expected(scorer, references, hyps)])


def test_default_tokenizer_drops_what_rouge_score_drops() -> None:
    """Non-English letters vanish (the documented limit of rouge-score's tokenizer); control characters
    in the text are only separators."""
    hyps = ["Мир труд май", "中文 分词", "a\x01b\x02c", "\u212a İ"]
    references = [["Мир"], ["中文"], ["a b c"], ["k i"]]
    specs = [RougeSpec(rouge_type) for rouge_type in ROUGE_TYPES]
    stats = rouge_statistics(specs, [hyps], references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    assert_equal_to_rouge_score(specs, stats, [expected(scorer, references, hyps)])
    assert stats[0][0, :2, 1].tolist() == [0.0, 0.0] and stats[0][0, 2:, 1].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("batch_words", [lcs.BATCH_WORDS, 50])
def test_bit_parallel_lcs_equals_rouge_scores_table_and_backtrack(
    batch_words: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lcs, "BATCH_WORDS", batch_words)
    rng = random.Random(3)
    refs = [
        [rng.randrange(rng.randint(1, 6)) for _ in range(rng.choice([0, 1, 5, 40, 63, 64, 65, 129]))]
        for _ in range(400)
    ]
    cans = [[rng.randrange(6) for _ in range(rng.choice([0, 1, 7, 30, 90]))] for _ in range(400)]
    tokens: list[int] = []
    starts: list[list[int]] = [[], []]
    for ref, can in zip(refs, cans, strict=True):
        starts[0].append(len(tokens))
        tokens += ref
        starts[1].append(len(tokens))
        tokens += can
    seqs = SequencePairs(
        np.array(tokens, dtype=np.int64),
        np.array(starts[0]),
        np.array([len(r) for r in refs]),
        np.array(starts[1]),
        np.array([len(c) for c in cans]),
    )
    lengths = lcs_lengths(seqs)
    pairs, offsets = lcs_positions(seqs)
    for k, (ref, can) in enumerate(zip(refs, cans, strict=True)):
        assert lengths[k] == (rouge_scorer._lcs_table(ref, can)[-1][-1] if ref and can else 0)
        assert sorted(offsets[pairs == k].tolist()) == (rouge_scorer.lcs_ind(ref, can) if ref and can else [])


def test_rouge_l_of_segments_too_long_for_the_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lcs, "MAX_PAIR_WORDS", 100)
    allowed = generation_report(["a " * 40], ["a " * 100], metrics=["rougeL"])["rougeL"].score
    assert allowed == pytest.approx(100 * 2 * 0.4 / 1.4)
    with pytest.raises(MetricInputError, match="too long for ROUGE-L"):
        generation_report(["a " * 120], ["a " * 100], metrics=["rougeL"])


def test_report_is_100_times_the_mean_of_rouge_scores_f_measures() -> None:
    systems, references = corpus(seed=11, n=120, max_refs=2)
    hyps = systems[0]
    report = generation_report(hyps, references, metrics=[*ROUGE_TYPES], sentence_level=True, workers=1)
    scores = expected(rouge_scorer.RougeScorer(list(ROUGE_TYPES)), references, hyps)
    for rouge_type in ROUGE_TYPES:
        ours = report[rouge_type]
        for field, got in (("fmeasure", ours.score), ("precision", ours.precision), ("recall", ours.recall)):
            assert got == pytest.approx(100 * np.mean([getattr(s[rouge_type], field) for s in scores]), abs=1e-9)
        assert ours.sentence_scores == [100 * s[rouge_type].fmeasure for s in scores]
        assert ours.signature.startswith("nrefs:var|tok:default|stem:no")
    assert "split:newline" in report["rougeLsum"].signature


def test_parallel_chunks_equal_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    systems, references = corpus(seed=5, n=60, max_refs=2)
    specs = [RougeSpec(rouge_type, use_stemmer=True) for rouge_type in ROUGE_TYPES] + [ExactMatchSpec()]
    monkeypatch.setattr(generation_stats, "CHUNK_SEGMENTS", 7)
    monkeypatch.setattr(generation_stats, "INLINE_BELOW", 0)
    try:
        parallel = extract_statistics(specs, systems, references, workers=2)
    finally:
        shutdown_pools()
    inline = [rouge_statistics(specs[:4], systems, references), [exact_match_statistics(specs[4], systems, references)]]
    for par, inl in zip(parallel, inline[0] + inline[1], strict=True):
        assert np.array_equal(par, inl)


def test_intervals_bracket_the_score_and_are_seeded() -> None:
    systems, references = corpus(seed=2, n=150, max_refs=1)
    metrics = [*ROUGE_TYPES, "exact_match"]
    report = generation_report(systems[0], references, metrics=metrics, n_resamples=300, seed=4, workers=1)
    again = generation_report(systems[0], references, metrics=metrics, n_resamples=300, seed=4, workers=1)
    for name in metrics:
        interval = report[name].interval
        assert interval is not None and interval.low < report[name].score < interval.high, name
        assert again[name].interval == interval
        assert report[name].signature.endswith("|bs:300|seed:4")


def test_paired_rouge_l_test_finds_a_real_difference_and_none_between_equals() -> None:
    rng = random.Random(9)
    references = [" ".join(rng.choice(WORDS[:12]) for _ in range(12)) for _ in range(300)]
    good = [" ".join(w for w in ref.split() if rng.random() > 0.1) for ref in references]
    bad = [" ".join(w if rng.random() > 0.5 else rng.choice(WORDS) for w in ref.split()) for ref in references]
    for test in ("paired_bootstrap", "approximate_randomization"):
        result = compare_generation(references, bad, good, metrics=["rougeL"], test=test, n_resamples=500, workers=1)
        rouge_l = result["rougeL"]
        scores = expected(rouge_scorer.RougeScorer(["rougeL"]), [[r] for r in references], good)
        assert rouge_l.candidate == pytest.approx(100 * np.mean([s["rougeL"].fmeasure for s in scores]), abs=1e-9)
        assert rouge_l.metric == "rougeL" and rouge_l.delta > 10 and rouge_l.p_value < 0.01
        same = compare_generation(
            references, good, good, metrics=["rougeL", "exact_match"], test=test, n_resamples=200, workers=1
        )
        assert same["rougeL"].p_value == 1.0 and same["exact_match"].p_value == 1.0


@pytest.mark.parametrize(
    ("hyp", "refs", "lowercase", "match"),
    [
        ("Paris", ["Paris"], False, True),
        ("  Paris\n", ["Paris "], False, True),
        ("\u00a0Paris\u2003", ["Paris"], False, True),  # Unicode spaces are stripped too (str.strip)
        ("paris", ["Paris"], False, False),
        ("paris", ["Paris"], True, True),
        ("PARIS ", ["london", " paris"], True, True),
        ("Paris, France", ["Paris"], False, False),
        ("Pa ris", ["Paris"], False, False),
        ("", [""], False, True),
        ("", [" \t"], False, True),
        ("Straße", ["STRASSE"], True, False),  # lowercasing, not case folding
    ],
)
def test_exact_match_cases(hyp: str, refs: list[str], lowercase: bool, match: bool) -> None:
    report = generation_report([hyp], [refs], metrics=["exact_match"], lowercase=lowercase, sentence_level=True)
    assert report["exact_match"].score == (100.0 if match else 0.0)
    assert report["exact_match"].sentence_scores == [100.0 if match else 0.0]


def test_exact_match_is_the_share_of_matching_segments() -> None:
    hyps = ["a", "b", "c ", "D"]
    refs = [["a"], ["x", "b"], ["c"], ["d"]]
    report = generation_report(hyps, refs, metrics=["exact_match"], n_resamples=200, workers=1)
    assert report["exact_match"].score == 75.0
    assert report["exact_match"].signature == "nrefs:var|case:mixed|strip:yes|bs:200|seed:0"
    assert generation_report(hyps, refs, metrics=["exact_match"], lowercase=True)["exact_match"].score == 100.0


def test_sentence_level_bleu_carries_the_warning() -> None:
    hyps, refs = ["the cat sat on the mat"], ["the cat sat on a mat"]
    warned = generation_report(hyps, refs, metrics=["bleu", "chrf"], sentence_level=True)
    assert warned["bleu"].warnings == [SENTENCE_BLEU_WARNING] and "chrF" in SENTENCE_BLEU_WARNING
    assert warned["chrf"].warnings is None
    assert generation_report(hyps, refs, metrics=["bleu"])["bleu"].warnings is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"rouge_tokenize": "spacy"}, "rouge_tokenize"),
        ({"rouge_tokenize": "whitespace", "rouge_stemmer": True}, "rouge_stemmer"),
        ({"rouge_stemmer": "yes"}, "rouge_stemmer"),
        ({"metrics": ["rouge3"]}, "metrics"),
    ],
)
def test_bad_rouge_options_name_the_field(options: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"metrics": ["rougeL"], **options}
    with pytest.raises(MetricInputError) as caught:
        generation_report(["a"], ["a"], **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
