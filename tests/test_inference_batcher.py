"""The dynamic batcher on its own: merging, limits, length grouping, deadlines and draining."""

import asyncio
import threading
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.inference.batcher import Closing, DynamicBatcher, QueueFull, QueueTimeout, RunTimeout


class Recorder:
    """A run_batch that records each batch; ``gate`` holds the worker to let a queue build up."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[tuple[list[str], Hashable]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.seconds = seconds

    def __call__(self, items: list[str], key: Hashable, lanes: int = 1) -> list[str]:
        self.gate.wait(10)
        time.sleep(self.seconds)
        self.batches.append((list(items), key))
        return [item.upper() for item in items]


def run(coro_factory):  # type: ignore[no-untyped-def]
    return asyncio.run(coro_factory())


def make(recorder: Recorder, **options: object) -> DynamicBatcher[str, str]:
    defaults: dict[str, object] = {"max_batch_size": 4, "max_delay_s": 0.05, "max_queue": 100, "length": len}
    defaults.update(options)
    return DynamicBatcher(recorder, [ThreadPoolExecutor(1)], **defaults)  # type: ignore[arg-type]


def test_concurrent_requests_merge_up_to_the_batch_size() -> None:
    recorder = Recorder()

    async def scenario() -> list[list[str]]:
        batcher = make(recorder)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"x{i}"], None, 5) for i in range(10)))
        await batcher.aclose()
        return results

    results = run(scenario)
    assert results == [[f"X{i}"] for i in range(10)]
    sizes = [len(items) for items, _ in recorder.batches]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3


def test_one_request_larger_than_a_batch_is_split_and_kept_in_order() -> None:
    recorder = Recorder()

    async def scenario() -> list[str]:
        batcher = make(recorder, max_delay_s=0)
        batcher.start()
        result = await batcher.submit([f"item{i:02d}" for i in range(10)], None, 5)
        await batcher.aclose()
        return result

    assert run(scenario) == [f"ITEM{i:02d}" for i in range(10)]
    assert all(len(items) <= 4 for items, _ in recorder.batches)


def test_a_lone_request_waits_at_most_the_delay() -> None:
    recorder = Recorder()

    async def scenario() -> float:
        batcher = make(recorder, max_delay_s=0.2)
        batcher.start()
        start = time.monotonic()
        await batcher.submit(["a"], None, 5)
        elapsed = time.monotonic() - start
        await batcher.aclose()
        return elapsed

    assert 0.15 < run(scenario) < 1.0


def test_keys_never_share_a_batch() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        batcher = make(recorder)
        batcher.start()
        await asyncio.gather(*(batcher.submit([f"x{i}"], i % 2, 5) for i in range(8)))
        await batcher.aclose()

    run(scenario)
    for items, key in recorder.batches:
        assert {int(item[1:]) % 2 for item in items} == {key}


def test_queued_examples_are_grouped_by_length() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def scenario() -> None:
        batcher = make(recorder, max_delay_s=0)
        batcher.start()
        blocker = asyncio.ensure_future(batcher.submit(["z"], None, 5))
        await asyncio.sleep(0.05)  # the worker now holds "z" behind the gate
        texts = ["a" * n for n in (1, 100, 2, 101, 3, 102, 4, 103)]
        pending = [asyncio.ensure_future(batcher.submit([t], None, 5)) for t in texts]
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await asyncio.gather(blocker, *pending)
        await batcher.aclose()

    run(scenario)
    grouped = [sorted(map(len, items)) for items, _ in recorder.batches[1:]]
    assert grouped == [[1, 2, 3, 4], [100, 101, 102, 103]]


def test_a_full_queue_refuses_with_retry_after() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def scenario() -> None:
        batcher = make(recorder, max_queue=3, max_delay_s=0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["a"], None, 5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit(["b", "c"], None, 5))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(["d", "e"], None, 5)
        assert refused.value.retry_after_s >= 1
        assert batcher.depth == 2
        recorder.gate.set()
        await asyncio.gather(running, queued)
        await batcher.aclose()

    run(scenario)


def test_deadline_while_queued_withdraws_the_examples() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def scenario() -> None:
        batcher = make(recorder, max_delay_s=0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(["first"], None, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueTimeout):
            await batcher.submit(["late"], None, 0.1)
        assert batcher.depth == 0
        recorder.gate.set()
        await running
        await batcher.aclose()

    run(scenario)
    assert [items for items, _ in recorder.batches] == [["first"]]


def test_deadline_while_running_is_a_run_timeout() -> None:
    recorder = Recorder(seconds=0.3)

    async def scenario() -> None:
        batcher = make(recorder, max_delay_s=0)
        batcher.start()
        with pytest.raises(RunTimeout):
            await batcher.submit(["slow"], None, 0.1)
        await batcher.aclose()

    run(scenario)


def test_errors_reach_every_request_in_the_batch() -> None:
    def broken(items: list[str], key: Hashable, lanes: int) -> list[str]:
        raise ValueError("boom")

    async def scenario() -> list[BaseException | list[str]]:
        batcher: DynamicBatcher[str, str] = DynamicBatcher(
            broken, [ThreadPoolExecutor(1)], max_batch_size=4, max_delay_s=0.05, max_queue=10
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([str(i)], None, 5) for i in range(3)), return_exceptions=True)
        await batcher.aclose()
        return results

    assert all(isinstance(r, ValueError) for r in run(scenario))


def test_close_finishes_in_flight_work_and_refuses_new_work() -> None:
    recorder = Recorder(seconds=0.05)

    async def scenario() -> list[list[str]]:
        batcher = make(recorder, max_batch_size=2, max_delay_s=0)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([f"x{i}"], None, 5)) for i in range(6)]
        await asyncio.sleep(0.01)
        await batcher.aclose()
        with pytest.raises(Closing):
            await batcher.submit(["after"], None, 5)
        return [p.result() for p in pending]

    assert run(scenario) == [[f"X{i}"] for i in range(6)]


class LaneRecorder:
    """Records each batch's lanes and the most batches ever running at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lanes: list[tuple[list[str], int]] = []
        self.threads: list[str] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, items: list[str], key: Hashable, lanes: int) -> list[str]:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.lanes.append((list(items), lanes))
            self.threads.append(threading.current_thread().name.split("_")[0])
        return [f"{item}:{key}" for item in items]


def make_laned(recorder: LaneRecorder, **options: object) -> DynamicBatcher[str, str]:
    defaults: dict[str, object] = {"max_batch_size": 2, "max_delay_s": 0, "max_queue": 100}
    defaults.update(options)
    lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"lane{i}") for i in range(2)]
    return DynamicBatcher(recorder, lanes, **defaults)  # type: ignore[arg-type]


def test_under_load_batches_overlap_on_one_lane_each() -> None:
    recorder = LaneRecorder(seconds=0.05)

    async def scenario() -> list[list[str]]:
        batcher = make_laned(recorder)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"x{i}"], "k", 5) for i in range(12)))
        await batcher.aclose()
        return results

    assert run(scenario) == [[f"x{i}:k"] for i in range(12)]
    assert recorder.most_running == 2
    # While others wait in the queue, a batch holds one lane; only the last ones may find it empty.
    assert [lanes for _, lanes in recorder.lanes[:4]] == [1, 1, 1, 1]
    assert all(len(items) <= 2 for items, _ in recorder.lanes)
    assert set(recorder.threads) == {"lane0", "lane1"}


def test_a_batch_with_nothing_queued_behind_it_takes_every_lane() -> None:
    recorder = LaneRecorder(seconds=0.01)

    async def scenario() -> None:
        batcher = make_laned(recorder)
        batcher.start()
        for i in range(3):
            await batcher.submit([f"lone{i}"], None, 5)
        await batcher.aclose()

    run(scenario)
    assert [lanes for _, lanes in recorder.lanes] == [2, 2, 2]
    assert recorder.most_running == 1
    assert recorder.threads == ["lane0"] * 3  # only the first lane ever runs wide


def test_an_exclusive_key_never_runs_beside_another_batch() -> None:
    recorder = LaneRecorder(seconds=0.03)
    overlaps: list[int] = []
    inner = recorder.__call__

    def checked(items: list[str], key: Hashable, lanes: int) -> list[str]:
        if key == "seeded":
            overlaps.append(recorder.running)
            assert lanes == 2
        return inner(items, key, lanes)

    async def scenario() -> None:
        batcher: DynamicBatcher[str, str] = DynamicBatcher(
            checked, [ThreadPoolExecutor(1), ThreadPoolExecutor(1)], max_batch_size=1, max_delay_s=0, max_queue=100,
            exclusive=lambda key: key == "seeded",
        )
        batcher.start()
        keys = ["plain", "plain", "seeded", "plain", "plain", "seeded", "plain"]
        await asyncio.gather(*(batcher.submit([f"{key}{i}"], key, 5) for i, key in enumerate(keys)))
        await batcher.aclose()

    run(scenario)
    assert overlaps == [0, 0]
    assert recorder.most_running == 2


def test_a_lone_batch_runs_wide_only_when_every_lane_is_free() -> None:
    recorder = LaneRecorder(seconds=0.1)

    async def scenario() -> None:
        lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"lane{i}") for i in range(3)]
        batcher: DynamicBatcher[str, str] = DynamicBatcher(
            recorder, lanes, max_batch_size=1, max_delay_s=0, max_queue=9
        )
        batcher.start()
        # "a" leaves "b" queued, so it takes one lane; "b" then leaves nothing queued, but a lane is busy.
        await asyncio.gather(batcher.submit(["a"], None, 5), batcher.submit(["b"], None, 5))
        await batcher.submit(["c"], None, 5)  # every lane free and nothing queued: all three
        await batcher.aclose()

    run(scenario)
    held = {items[0]: (lanes, thread) for (items, lanes), thread in zip(recorder.lanes, recorder.threads, strict=True)}
    assert held == {"a": (1, "lane0"), "b": (1, "lane1"), "c": (3, "lane0")}


def test_without_wide_a_lone_batch_keeps_one_lane_and_the_next_starts_beside_it() -> None:
    recorder = LaneRecorder(seconds=0.1)

    async def scenario() -> None:
        batcher = make_laned(recorder, max_batch_size=1, wide=False)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], None, 5))
        await asyncio.sleep(0.03)  # "a" runs alone, with nothing queued behind it
        await asyncio.gather(first, batcher.submit(["b"], None, 5))
        await batcher.aclose()

    run(scenario)
    held = {items[0]: (lanes, thread) for (items, lanes), thread in zip(recorder.lanes, recorder.threads, strict=True)}
    assert held == {"a": (1, "lane0"), "b": (1, "lane1")}
    assert recorder.most_running == 2


def test_a_borrower_gets_lanes_only_once_nothing_is_queued() -> None:
    recorder = LaneRecorder(seconds=0.05)

    async def scenario() -> tuple[int, list[int], list[str]]:
        batcher = make_laned(recorder, max_batch_size=1)
        batcher.start()
        queued = [asyncio.ensure_future(batcher.submit([f"x{i}"], "k", 5)) for i in range(4)]
        await asyncio.sleep(0)
        lanes = await batcher.borrow(2)
        ran_before = len(recorder.lanes)
        # Borrowed lanes are busy to batches: this one waits until they are given back.
        later = asyncio.ensure_future(batcher.submit(["late"], "k", 5))
        await asyncio.sleep(0.1)
        assert not later.done()
        batcher.give_back(lanes)
        result = await later
        await asyncio.gather(*queued)
        await batcher.aclose()
        return ran_before, lanes, result

    ran_before, lanes, result = run(scenario)
    assert ran_before == 4 and sorted(lanes) == [0, 1] and result == ["late:k"]


def test_a_borrowed_lane_makes_batches_narrow_and_closing_refuses_borrowers() -> None:
    recorder = LaneRecorder(seconds=0.01)

    async def scenario() -> None:
        batcher = make_laned(recorder)
        batcher.start()
        lanes = await batcher.borrow(1)
        assert lanes == [1]  # the last lane: the first stays free for batches
        await batcher.submit(["a"], None, 5)
        closing = asyncio.ensure_future(batcher.aclose())
        await asyncio.sleep(0.05)
        assert not closing.done()  # a borrowed lane is work in progress
        with pytest.raises(Closing):
            await batcher.borrow(1)
        batcher.give_back(lanes)
        await closing

    run(scenario)
    assert [lanes for _, lanes in recorder.lanes] == [1]


def test_borrowers_leave_the_reserved_lanes_to_batches() -> None:
    recorder = LaneRecorder(seconds=0.01)

    async def scenario() -> None:
        batcher = make_laned(recorder)
        batcher.start()
        first = await batcher.borrow(1, reserve=1)
        second = asyncio.ensure_future(batcher.borrow(1, reserve=1))
        await asyncio.sleep(0.05)
        assert not second.done()  # a lane is free, but it is the one left to batches
        assert await batcher.submit(["a"], None, 5) == ["a:None"]
        batcher.give_back(first)
        batcher.give_back(await second)
        every = await batcher.borrow(2)  # with no reserve, every lane
        assert sorted(every) == [0, 1] and batcher.idle_s < 1
        batcher.give_back(every)
        await batcher.aclose()

    run(scenario)
