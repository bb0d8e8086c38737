"""The bulk 13a tokenizer and the numpy n-gram counts against sacrebleu's per-segment path."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

from metrics.generation_stats import OFFLINE_TOKENIZERS, BleuSpec, _BleuTokenizer, _RegexpNoTemplate, chunk_statistics

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters every 13a rule reacts to, plus newlines, non-ASCII digits, whitespace and bulk separators.
ADVERSARIAL = "\x00\x01a Z09.,.,,..--!?&;<>/@()\"'\n\t\r\x0b\u00a0\u2028\u0660é中。"
PIECES = ["<skipped>", "&quot;", "&amp;", "&lt;", "&gt;", "-\n", "...", ",,", "1.5", "3,000", "9-", "-1", "Σ.", "ΑΣ"]

lines = st.one_of(
    st.text(alphabet=ADVERSARIAL, max_size=30),
    st.lists(st.sampled_from(PIECES + list(".,- 0")), max_size=10).map("".join),
    st.sampled_from(["", " ", ".", ",", "-", "...", " . , - ", "\n", "<skipped>"]),
)


@SETTINGS
@given(st.lists(lines, max_size=12), st.booleans())
def test_bulk_13a_tokenization_equals_per_segment(segments: list[str], lowercase: bool) -> None:
    spec = BleuSpec(lowercase=lowercase)
    metric = spec.build()
    ids, lengths, vocabulary = _BleuTokenizer(spec)(segments)
    tokens = [vocabulary[i] for i in ids]
    expected = [metric._preprocess_segment(line).split() for line in segments]
    assert (tokens, lengths.tolist()) == ([t for ts in expected for t in ts], [len(ts) for ts in expected])


def test_bulk_13a_without_a_free_separator_falls_back_to_per_segment() -> None:
    segments = ["".join(map(chr, range(0x20))) + "a.b, c-1 2-3.", "x.", ""]
    ids, lengths, vocabulary = _BleuTokenizer(BleuSpec())(segments)
    tokens = [vocabulary[i] for i in ids]
    expected = [BleuSpec().build()._preprocess_segment(line).split() for line in segments]
    assert (tokens, lengths.tolist()) == ([t for ts in expected for t in ts], [len(ts) for ts in expected])


@SETTINGS
@given(lines)
def test_period_and_comma_runs_equal_sacrebleu_regexp(line: str) -> None:
    assert _RegexpNoTemplate()(line) == TokenizerRegexp()(line)


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[str], list[str], list[list[str]]]:
    """Two systems and 1-3 references per segment, with few words so that n-grams repeat and match."""
    words = st.lists(st.sampled_from(["a", "b", "a.", "b,", "1", "-", "A", "é"]), max_size=20).map(" ".join)
    text = st.one_of(words, lines)
    n = draw(st.integers(1, 8))
    systems = [draw(st.lists(text, min_size=n, max_size=n)) for _ in range(2)]
    refs = [draw(st.lists(text, min_size=1, max_size=3)) for _ in range(n)]
    return systems[0], systems[1], refs


@SETTINGS
@given(corpora(), st.sampled_from(OFFLINE_TOKENIZERS), st.booleans(), st.integers(1, 5))
def test_vectorised_counts_equal_sacrebleu(
    corpus: tuple[list[str], list[str], list[list[str]]], tokenize: str, lowercase: bool, order: int
) -> None:
    base, cand, refs = corpus
    spec = BleuSpec(tokenize=tokenize, lowercase=lowercase, max_ngram_order=order)
    ours = chunk_statistics((spec,), (base, cand), refs)[0]
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(max(map(len, refs)))]
    for system, stats in zip((base, cand), ours, strict=True):
        assert stats.tolist() == spec.build()._extract_corpus_statistics(system, streams)


def test_long_segments_with_repeated_ngrams() -> None:
    hyp = " ".join(["the cat the cat sat ."] * 400)
    refs = [" ".join(["the cat sat"] * 300), " ".join(["cat the cat"] * 500), ""]
    spec = BleuSpec()
    ours = chunk_statistics((spec,), ([hyp, "", "the the the"],), [refs, ["x"], ["the the", "the"]])[0][0]
    expected = spec.build()._extract_corpus_statistics(
        [hyp, "", "the the the"], [[refs[0], "x", "the the"], [refs[1], None, "the"], [refs[2], None, None]]
    )
    assert ours.tolist() == expected
