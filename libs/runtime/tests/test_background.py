"""The background loops services run: work that arrives while a round is looking for it is
taken at once, not after the idle nap; a loop, or a nap, cancelled as it is woken stops."""

from __future__ import annotations

import asyncio

from zhike_runtime.background import nap, while_working


async def test_a_wake_up_during_a_round_that_found_nothing_starts_the_next_round_at_once() -> None:
    wake = asyncio.Event()
    second_round = asyncio.Event()
    rounds: list[float] = []
    loop = asyncio.get_running_loop()

    async def round_() -> int:
        rounds.append(loop.time())
        if len(rounds) == 1:
            wake.set()  # new work committed after this round's query found none
        else:
            second_round.set()
        return 0

    task = asyncio.create_task(while_working("test round", round_, wake, idle_seconds=30)())
    try:
        await asyncio.wait_for(second_round.wait(), timeout=5)
    finally:
        task.cancel()

    assert rounds[1] - rounds[0] < 1.0  # not the 30 s nap


async def test_without_a_wake_up_the_loop_naps_between_rounds_that_find_nothing() -> None:
    wake = asyncio.Event()
    rounds = 0

    async def round_() -> int:
        nonlocal rounds
        rounds += 1
        return 0

    task = asyncio.create_task(while_working("test round", round_, wake, idle_seconds=30)())
    await asyncio.sleep(0.2)
    task.cancel()

    assert rounds == 1


async def test_a_loop_cancelled_in_the_turn_it_is_woken_stops() -> None:
    # A service stopping cancels its loops once and waits for them: a loop that let this
    # cancellation go (Python 3.11's wait_for does, when the wake-up lands in the same turn)
    # would keep the service from ever stopping.
    wake = asyncio.Event()
    napping = asyncio.Event()

    async def round_() -> int:
        napping.set()
        return 0

    task = asyncio.create_task(while_working("test round", round_, wake, idle_seconds=60)())
    await napping.wait()
    await asyncio.sleep(0)  # into the nap
    await woken_and_cancelled_in_one_turn(task, wake)


async def test_a_nap_cancelled_in_the_turn_it_is_woken_is_cancelled() -> None:
    # The outbox relay naps this way between rounds; see the test above for why it matters.
    wake = asyncio.Event()
    task = asyncio.create_task(nap(wake, 60))
    await asyncio.sleep(0)  # into the nap
    await woken_and_cancelled_in_one_turn(task, wake)


async def woken_and_cancelled_in_one_turn(task: asyncio.Task[None], wake: asyncio.Event) -> None:
    """Wakes the napping `task` and cancels it in the same turn; it must end, cancelled."""
    wake.set()
    task.cancel()

    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task}
    assert task.cancelled()
