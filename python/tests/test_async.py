"""asyncio: never blocking the loop, cancellation leaves nothing held."""

from __future__ import annotations

import asyncio
import time

import pytest

import holdfast
from conftest import BOUND, HOLDER

PRIMS = {
    "lock": lambda p: holdfast.Lock(p),
    "fifo": lambda p: holdfast.FifoLock(p),
    "semaphore": lambda p: holdfast.Semaphore(p, 1),
    "lockfile": lambda p: holdfast.LockFile(p, "soft"),
}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND * 2))


PRIM_HOLDER = """
import sys, holdfast
make = {
    "lock": lambda p: holdfast.Lock(p),
    "fifo": lambda p: holdfast.FifoLock(p),
    "semaphore": lambda p: holdfast.Semaphore(p, 1),
    "lockfile": lambda p: holdfast.LockFile(p, "soft"),
}[sys.argv[2]]
lock = make(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("kind", sorted(PRIMS))
def test_async_wait_cancel_and_timeout_leave_nothing_held(tmp_path, kind, child):
    p = str(tmp_path / "a.lock")
    make = PRIMS[kind]
    c = child(PRIM_HOLDER, p, kind)
    c.expect("locked")

    async def main():
        ticks = 0
        waiter = make(p)
        task = asyncio.ensure_future(waiter.acquire_async())
        # The loop keeps running while the task waits.
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not waiter.locked
        # A timed-out wait leaves nothing held either.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(make(p).acquire_async(), 0.1)
        with pytest.raises(holdfast.Timeout):
            await make(p).acquire_async(timeout=0.1)
        # A waiter that stays gets it when the holder lets go.
        last = make(p)
        task = asyncio.ensure_future(last.acquire_async(timeout=BOUND))
        await asyncio.sleep(0.05)
        c.send("release")
        await task
        assert last.locked
        last.release()
        # The cancelled and timed-out waiters hold nothing.
        third = make(p)
        await third.acquire_async(blocking=False)
        third.release()

    run(main())


def test_async_waiter_gets_the_lock_from_another_process(tmp_path, child):
    p = str(tmp_path / "a.lock")
    c = child(HOLDER, p)
    c.expect("locked")

    async def main():
        lock = holdfast.Lock(p)
        task = asyncio.ensure_future(lock.acquire_async(timeout=BOUND))
        await asyncio.sleep(0.05)
        assert not task.done()
        t0 = time.monotonic()
        c.send("release")
        await task
        assert lock.locked and lock.token is not None
        assert time.monotonic() - t0 < 5
        lock.release()

    run(main())


def test_async_tasks_exclude_each_other(tmp_path):
    p = tmp_path / "t.lock"
    lock = holdfast.Lock(p)
    inside = [0]
    peak = [0]

    async def work():
        for _ in range(20):
            async with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                await asyncio.sleep(0)
                inside[0] -= 1

    async def main():
        await asyncio.gather(*(work() for _ in range(4)))

    run(main())
    assert peak[0] == 1 and not lock.locked


def test_cancel_racing_a_grant_releases_it(tmp_path):
    """Cancel at the moment the lock is handed over, many times: whatever
    the interleaving, nothing stays held."""
    p = tmp_path / "r.lock"

    async def main():
        holder = holdfast.Lock(p)
        for i in range(30):
            await holder.acquire_async()
            waiter = holdfast.Lock(p)
            task = asyncio.ensure_future(waiter.acquire_async())
            await asyncio.sleep(0.005)
            holder.release()
            await asyncio.sleep((i % 3) * 0.0005)
            task.cancel()
            try:
                await task
                waiter.release()
            except asyncio.CancelledError:
                pass
            # By the time the cancellation has propagated, a grant that
            # raced it has been released: the lock is free right now.
            probe = holdfast.Lock(p)
            probe.acquire(blocking=False)
            probe.release()

    run(main())
