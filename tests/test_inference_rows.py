"""``RowStreamer`` decodes each row incrementally: its deltas must add up to the whole row decoded at once.

The oracle is the tokenizer's own ``decode`` of every generated token. A byte-level BPE splits multi-byte
characters over tokens, so partial characters must be held back mid-stream and kept at the end.
"""

import random
from collections.abc import Callable

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from service.inference.encoding import Encoded
from service.inference.rows import PARTIAL, Delta, Row, RowParams, RowStreamer

EOS = 0
CORPUS = ["日本語 の テキスト café naïve über", "plain ascii words and numbers 123", "emoji 🙂 mixed 日本 text"] * 20


@pytest.fixture(scope="module")
def fast() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


@pytest.fixture(scope="module")
def decode(fast: PreTrainedTokenizerFast) -> Callable[[list[int]], str]:
    return lambda ids: str(fast.decode(ids, skip_special_tokens=True))


def stream(
    decode: Callable[[list[int]], str], steps: list[list[int]], params: list[RowParams]
) -> tuple[RowStreamer, list[list[Delta]]]:
    """Runs the streamer as ``generate`` would: the prompt, one token per row per step, then ``end``."""
    calls: list[list[Delta]] = []
    rows = [Row(Encoded([1], False), p, index=i, sink=calls.append) for i, p in enumerate(params)]
    streamer = RowStreamer(rows, decode, EOS)
    streamer.put(torch.tensor([[1]] * len(rows)))
    for step in steps:
        streamer.put(torch.tensor(step))
    streamer.end()
    return streamer, calls


def texts(calls: list[list[Delta]], count: int) -> list[str]:
    joined = [""] * count
    for call in calls:
        for delta in call:
            joined[delta.index] += delta.text
    return joined


def test_deltas_add_up_to_the_whole_decoded_row(decode: Callable[[list[int]], str]) -> None:
    rng = random.Random(7)
    for _ in range(30):
        rows = rng.randint(1, 4)
        tokens = [[rng.randrange(1, 400) for _ in range(rng.randint(1, 40))] for _ in range(rows)]
        steps = max(map(len, tokens))
        params = [RowParams(len(t)) for t in tokens]
        padded = [[t[s] if s < len(t) else EOS for t in tokens] for s in range(steps)]
        streamer, calls = stream(decode, padded, params)
        whole = [decode(t) for t in tokens]
        assert texts(calls, rows) == whole == [p.text for p in streamer.progress]
        assert all(len({d.index for d in call}) == len(call) for call in calls), "one call per step, a delta per row"


def test_a_character_split_over_tokens_is_sent_whole(
    fast: PreTrainedTokenizerFast, decode: Callable[[list[int]], str]
) -> None:
    byte_chars = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str("日本 ok")
    tokens = fast.convert_tokens_to_ids([char for word, _ in byte_chars for char in word])
    streamer, calls = stream(decode, [[t] for t in tokens], [RowParams(len(tokens))])
    sent = [delta.text for call in calls for delta in call]
    assert "".join(sent) == "日本 ok" and not any(PARTIAL in text for text in sent)
    assert len(calls) < len(tokens), "the bytes of one character make one delta"


def test_stop_strings_cut_and_their_prefixes_wait(decode: Callable[[list[int]], str]) -> None:
    rng = random.Random(11)
    for _ in range(30):
        tokens = [rng.randrange(1, 400) for _ in range(30)]
        whole = decode(tokens)
        start = rng.randrange(0, max(1, len(whole) - 3))
        stop = whole[start : start + 3]
        streamer, calls = stream(decode, [[t] for t in tokens], [RowParams(30, stop=(stop,))])
        expected = whole[: whole.find(stop)] if stop else whole
        assert texts(calls, 1) == [expected] == [streamer.progress[0].text]
        assert streamer.progress[0].reason == ("stop" if stop else "length")


def test_eos_ends_a_row_and_keeps_its_text(decode: Callable[[list[int]], str]) -> None:
    tokens = [5, 9, 200, 31]
    streamer, calls = stream(decode, [[t] for t in [*tokens, EOS, 7]], [RowParams(10)])
    assert texts(calls, 1) == [decode(tokens)]
    assert (streamer.progress[0].reason, streamer.progress[0].tokens) == ("stop", tokens)
