"""A stream's mailbox: text joined per choice, paced by its interval, woken across threads only when a take
waits for it, and never holding back the last text once closed."""

import asyncio
import threading
import time
from typing import Any

from service.inference.mailbox import Mailbox
from service.inference.rows import Delta


def test_a_take_joins_each_choices_text() -> None:
    async def scenario() -> list[Delta] | None:
        mailbox = Mailbox(asyncio.get_running_loop(), 0)
        mailbox.put([Delta(0, "a"), Delta(1, "x")])
        mailbox.put([Delta(0, "b")])
        return await mailbox.take()

    assert asyncio.run(scenario()) == [Delta(0, "ab"), Delta(1, "x")]


def test_a_waiting_take_is_woken_by_a_put_from_another_thread_and_ends_when_closed() -> None:
    async def scenario() -> list[list[Delta] | None]:
        loop = asyncio.get_running_loop()
        mailbox = Mailbox(loop, 0)
        later = threading.Timer(0.05, mailbox.put, [[Delta(0, "late")]])
        later.start()
        first = await asyncio.wait_for(mailbox.take(), 5)
        loop.call_later(0.05, mailbox.close)
        return [first, await asyncio.wait_for(mailbox.take(), 5)]

    assert asyncio.run(scenario()) == [[Delta(0, "late")], None]


def test_puts_during_a_pause_wake_nobody_and_closing_ends_the_pause_at_once() -> None:
    # Long enough that "at once" (within half of it) holds on a loaded machine.
    interval = 2.0

    async def scenario() -> tuple[float, float, int, list[list[Delta] | None]]:
        loop = asyncio.get_running_loop()
        wakes = 0
        real = loop.call_soon_threadsafe

        def counted(*args: Any) -> Any:
            nonlocal wakes
            wakes += 1
            return real(*args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign, assignment]
        mailbox = Mailbox(loop, interval)
        mailbox.put([Delta(0, "a")])
        taken = [await asyncio.wait_for(mailbox.take(), 5)]
        start = time.monotonic()

        def write() -> None:
            for text in "bcd":
                mailbox.put([Delta(0, text)])

        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        taken.append(await asyncio.wait_for(mailbox.take(), 5))
        paced = time.monotonic() - start
        mailbox.put([Delta(0, "e")])
        start = time.monotonic()
        loop.call_later(0.05, mailbox.close)
        taken += [await asyncio.wait_for(mailbox.take(), 5), await asyncio.wait_for(mailbox.take(), 5)]
        return paced, time.monotonic() - start, wakes, taken

    paced, closing, wakes, taken = asyncio.run(scenario())
    assert taken == [[Delta(0, "a")], [Delta(0, "bcd")], [Delta(0, "e")], None]
    assert paced >= interval * 0.9
    assert closing < interval / 2
    assert wakes == 0
