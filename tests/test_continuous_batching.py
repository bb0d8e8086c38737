"""Continuous batching: rows join and leave a running batch between steps and still decode as ``generate``
does for each prompt alone; the engine sends plain and sampled rows to it and beam search and seeded
sampling to static batches; limits, deadlines and shutdown behave as the static batcher's."""

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, MistralConfig

from service.inference.continuous_batcher import ContinuousBatcher
from service.inference.decode_session import DecodeSession
from service.inference.encoding import TextEncoder
from service.inference.generator import GenOutput
from service.inference.kv_batch import KVBatch, cache_argument
from service.inference.loader import LoadedModel, load_model
from service.inference.model_dir import inspect_model_dir
from service.inference.options import GenerateOptions
from service.inference.rows import Delta, Row, RowParams
from tests.inference_fixtures import greedy_alone

pytest_plugins = ["tests.inference_fixtures"]

# HELDOUT_TEST_DEVICE=cuda decodes on a GPU (in float32) against the CPU oracle.
DEVICE = torch.device(os.environ.get("HELDOUT_TEST_DEVICE", "cpu"))
PROMPTS = ["a b c d =", "h", "g f e d c b a = a", "b d f h =", "c", "e e e e e e e e e e ="]
# (prompt index, max new tokens, step of the first row's decoding at which the row joins)
ARRIVALS = [(0, 14, 0), (1, 3, 0), (2, 9, 2), (3, 12, 5), (4, 1, 5), (5, 6, 11)]
CONFIGS: dict[str, Callable[[int, int], Any]] = {
    "gpt2": lambda vocab, eos: GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=eos, eos_token_id=eos
    ),
    "llama": lambda vocab, eos: LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=eos, eos_token_id=eos,
    ),
}  # fmt: skip


def random_lm(kind: str, target: Path, tokenizer_dir: Path, config: Callable[[int, int], Any]) -> Path:
    """A randomly initialised causal LM with the copy LM's tokenizer: its greedy output is arbitrary but fixed."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(7)
    AutoModelForCausalLM.from_config(config(len(tokenizer), tokenizer.eos_token_id)).eval().save_pretrained(target)
    for file in tokenizer_dir.iterdir():
        if "token" in file.name or file.name == "special_tokens_map.json":
            shutil.copy(file, target / file.name)
    return target


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def lm_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, copy_lm_dir: Path) -> Path:
    kind = request.param
    return random_lm(kind, tmp_path_factory.mktemp(kind), copy_lm_dir, CONFIGS[kind])


def alone(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return greedy_alone(tokenizer, AutoModelForCausalLM.from_pretrained(model_dir).eval(), prompt, max_new_tokens)[0]


def loaded(model_dir: Path) -> LoadedModel:
    return load_model(inspect_model_dir(model_dir), DEVICE, torch.float32)


def row(model: LoadedModel, prompt: str, max_new_tokens: int, **params: Any) -> Row:
    encoded = TextEncoder(model.tokenizer, model.token_ids.pad).encode([prompt], 64, "left")[0]
    return Row(encoded, RowParams(max_new_tokens, **params), record=False)


class Staggered:
    """Offers each row to the session when the first row's decoding reaches the row's step."""

    def __init__(self, session: DecodeSession, arrivals: list[tuple[Row, int]]) -> None:
        self._session = session
        self._arrivals = arrivals
        self.forwards: list[tuple[int, int]] = []
        """(rows, columns) of each forward pass."""

    def __call__(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        self.forwards.append((ids.shape[0], kwargs["attention_mask"].shape[1]))
        steps = sum(1 for rows, _ in self.forwards if rows > 0) - 1
        self._session.offer([r for r, at in self._arrivals if at == steps])


def run_staggered(model: LoadedModel, arrivals: list[tuple[Row, int]]) -> tuple[dict[int, Any], Staggered]:
    results: dict[int, Any] = {}
    rows = [r for r, _ in arrivals]
    cache_name = cache_argument(model.model)
    assert cache_name is not None
    session = DecodeSession(
        model, cache_name, lambda: None, lambda r, out: results.__setitem__(rows.index(r), out), lambda *_: None
    )
    staggered = Staggered(session, [(r, at) for r, at in arrivals if at > 0])
    handle = model.model.register_forward_pre_hook(staggered, with_kwargs=True)
    try:
        assert session.offer([r for r, at in arrivals if at == 0])
        session.run()
    finally:
        handle.remove()
    return results, staggered


def test_rows_that_join_and_leave_between_steps_decode_as_generate_alone(lm_dir: Path) -> None:
    model = loaded(lm_dir)
    arrivals = [(row(model, PROMPTS[p], new), at) for p, new, at in ARRIVALS]
    results, staggered = run_staggered(model, arrivals)
    for i, (p, new, _) in enumerate(ARRIVALS):
        out = results[i]
        assert isinstance(out, GenOutput), out
        assert out.text == alone(lm_dir, PROMPTS[p], new), (p, new)
        assert out.finish_reason in ("stop", "length") and out.tokens <= new
    # Rows shared forward passes, and the batch never grew wider than its longest row.
    assert max(rows for rows, _ in staggered.forwards) >= 3
    longest = max(len(r.encoded.ids) + r.params.max_new_tokens for r, _ in arrivals)
    assert max(columns for _, columns in staggered.forwards) <= longest


def test_a_sliding_window_cache_is_not_spliced(tmp_path: Path, copy_lm_dir: Path) -> None:
    config = lambda vocab, eos: MistralConfig(  # noqa: E731
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=4, bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    model = loaded(random_lm("mistral", tmp_path, copy_lm_dir, config))
    ids = torch.tensor([[1, 2, 3]])
    cache_name = cache_argument(model.model)
    assert cache_name is not None
    assert not KVBatch.prefill(model.model, cache_name, ids, torch.ones_like(ids))[0].supported


def test_a_failing_step_fails_its_rows_and_the_session_goes_on(copy_lm_dir: Path) -> None:
    model = loaded(copy_lm_dir)
    calls = 0

    def fail_third(*_: Any, **__: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("out of memory")

    handle = model.model.register_forward_pre_hook(fail_third, with_kwargs=True)
    try:
        results, _ = run_staggered(model, [(row(model, "a b c d =", 8), 0), (row(model, "h g f e =", 8), 0)])
    finally:
        handle.remove()
    assert all(isinstance(out, RuntimeError) for out in results.values()) and len(results) == 2
    results, _ = run_staggered(model, [(row(model, "a b c d =", 8), 0)])
    assert results[0].text == alone(copy_lm_dir, "a b c d =", 8)


class Observer:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.depths: list[int] = []

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def batch(self, size: int, queued_s: Any, run_s: float) -> None:
        self.batches.append(size)


@pytest.fixture
def batcher_for(copy_lm_dir: Path) -> Iterator[Callable[..., ContinuousBatcher]]:
    from concurrent.futures import ThreadPoolExecutor

    model = loaded(copy_lm_dir)
    cache_name = cache_argument(model.model)
    assert cache_name is not None
    pools: list[ThreadPoolExecutor] = []
    handles: list[Any] = []

    def make(lanes: int = 1, capacity: int = 4, max_queue: int = 16, step_s: float = 0.0) -> ContinuousBatcher:
        """``step_s``: each forward pass sleeps that long, so that rows stay admitted a while."""
        if step_s:
            handles.append(model.model.register_forward_pre_hook(lambda *_: time.sleep(step_s)))
        pools.extend(ThreadPoolExecutor(1) for _ in range(lanes))
        return ContinuousBatcher(
            lambda done, admitted: DecodeSession(model, cache_name, lambda: None, done, admitted),
            pools[-lanes:],
            capacity=capacity,
            max_queue=max_queue,
            observer=Observer(),
        )

    yield make
    for pool in pools:
        pool.shutdown()
    for handle in handles:
        handle.remove()


def slow_rows(copy_lm_dir: Path, count: int, new: int = 6) -> list[Row]:
    model = loaded(copy_lm_dir)
    return [row(model, "a b c d =", new) for _ in range(count)]


def test_the_queue_bound_deadlines_and_shutdown(
    batcher_for: Callable[..., ContinuousBatcher], copy_lm_dir: Path
) -> None:
    from service.inference.batcher import Closing, QueueFull, QueueTimeout

    async def scenario() -> None:
        batcher = batcher_for(capacity=1, max_queue=2, step_s=0.05)
        first = asyncio.ensure_future(batcher.submit(slow_rows(copy_lm_dir, 1, 12), 30))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(slow_rows(copy_lm_dir, 3), 30)
        with pytest.raises(QueueTimeout):
            await batcher.submit(slow_rows(copy_lm_dir, 1), 0.0001)
        waiting = asyncio.ensure_future(batcher.submit(slow_rows(copy_lm_dir, 1), 30))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.aclose())
        await asyncio.sleep(0)
        with pytest.raises(Closing):
            await batcher.submit(slow_rows(copy_lm_dir, 1), 30)
        await closing  # drains what was queued and admitted
        assert (await first)[0].text == alone(copy_lm_dir, "a b c d =", 12)
        assert (await waiting)[0].finish_reason in ("stop", "length")

    asyncio.run(scenario())


def test_rows_spread_over_lanes_and_resolve_when_done(
    batcher_for: Callable[..., ContinuousBatcher], copy_lm_dir: Path
) -> None:
    async def scenario() -> None:
        batcher = batcher_for(lanes=2, capacity=2)
        short, long_ = slow_rows(copy_lm_dir, 1, 1), slow_rows(copy_lm_dir, 3, 12)
        started = asyncio.ensure_future(batcher.submit(long_, 30))
        done_short = await batcher.submit(short, 30)
        assert done_short[0].tokens == 1 and not started.done()
        outputs = await started
        assert [out.text for out in outputs] == [alone(copy_lm_dir, "a b c d =", 12)] * 3
        await batcher.aclose()

    asyncio.run(scenario())


def test_the_engine_decodes_plain_and_sampled_rows_continuously_and_beams_statically(
    copy_lm_dir: Path, engine_for: Callable[..., Any]
) -> None:
    async def scenario() -> None:
        async with engine_for(copy_lm_dir) as engine:
            decoder = engine._decoder
            assert decoder is not None
            submitted: list[int] = []
            original = decoder.submit

            async def counting(rows: Any, timeout_s: float) -> Any:
                submitted.append(len(rows))
                return await original(rows, timeout_s)

            decoder.submit = counting  # type: ignore[method-assign]
            greedy = await engine.generate(["a b c d ="], GenerateOptions(max_new_tokens=8))
            assert greedy.outputs[0].text == alone(copy_lm_dir, "a b c d =", 8)
            # A nucleus this small keeps only the most likely token: sampling must draw the greedy answer.
            narrow = GenerateOptions(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=1e-6)
            sampled = await engine.generate(["a b c d =", "h g ="], narrow)
            assert [out.text for out in sampled.outputs] == [alone(copy_lm_dir, p, 8) for p in ("a b c d =", "h g =")]
            assert submitted == [1, 2]
            await engine.generate(["a b ="], GenerateOptions(max_new_tokens=4, num_beams=2))
            await engine.generate(["a b ="], GenerateOptions(max_new_tokens=4, do_sample=True, seed=3))
            assert submitted == [1, 2]

    asyncio.run(scenario())


def test_an_unmerged_adapter_decodes_continuously_as_peft_generates(
    lora_lm_dir: Path, copy_lm_dir: Path, engine_for: Callable[..., Any]
) -> None:
    from peft import PeftModel

    tokenizer = AutoTokenizer.from_pretrained(copy_lm_dir)
    oracle = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(copy_lm_dir), lora_lm_dir).eval()
    expected = []
    with torch.inference_mode():
        for prompt in PROMPTS[:3]:
            encoded = tokenizer(prompt, return_tensors="pt")
            sequence = oracle.generate(
                **encoded, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
            expected.append(tokenizer.decode(sequence[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True))

    async def scenario() -> list[str]:
        async with engine_for(lora_lm_dir, base_model_path=copy_lm_dir, merge_adapter=False) as engine:
            assert engine._decoder is not None
            generated = await engine.generate(PROMPTS[:3], GenerateOptions(max_new_tokens=6))
            return [out.text for out in generated.outputs]

    assert asyncio.run(scenario()) == expected


def test_a_stream_sends_at_most_one_event_per_interval_with_the_same_text(
    copy_lm_dir: Path, engine_for: Callable[..., Any]
) -> None:
    """HELDOUT_STREAM_INTERVAL_MS paces a stream's events; its text is the same as with every step sent."""
    prompt, new = "a b c d =", 8

    async def arrivals(interval_ms: float) -> list[tuple[float, str]]:
        async with engine_for(copy_lm_dir, stream_interval_ms=interval_ms) as engine:
            slow = engine.loaded.model.register_forward_pre_hook(lambda *_: time.sleep(0.08))
            try:
                events = engine.stream([prompt], GenerateOptions(max_new_tokens=new))
                return [(time.monotonic(), e.text) async for e in events if isinstance(e, Delta)]
            finally:
                slow.remove()

    paced, each = asyncio.run(arrivals(150)), asyncio.run(arrivals(0))
    expected = alone(copy_lm_dir, prompt, new)
    assert "".join(text for _, text in paced) == "".join(text for _, text in each) == expected
    assert len(each) >= 4 and 3 <= len(paced) < len(each)
    # The last text goes as soon as the stream ends, however recent the one before it.
    gaps = [later - earlier for (earlier, _), (later, _) in zip(paced, paced[1:], strict=False)]
    assert min(gaps[:-1]) >= 0.14
