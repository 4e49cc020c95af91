"""holdfast.Lock across processes, threads, fork and multiprocessing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

import holdfast
from conftest import BOUND, HOLDER, run_all, spawn_worker


def test_acquire_release_token_and_holders(tmp_path):
    p = tmp_path / "app.lock"
    lock = holdfast.Lock(p)
    assert not lock.locked
    with lock as held:
        assert held is lock and lock.locked
        first = lock.token
        assert isinstance(first, int)
        (me,) = lock.holders()
        assert me.pid == os.getpid() and me.this_process and me.token == first
        assert me.mode == "exclusive" and me.since is not None
        st = holdfast.status(p)
        assert st.locked and st.mode == "exclusive" and st.holder.pid == os.getpid()
    assert not lock.locked
    with lock.acquire(timeout=1):
        assert lock.token == first + 1
    assert holdfast.status(p).locked is False


def test_contention_names_the_holder_process(tmp_path, child):
    p = str(tmp_path / "app.lock")
    c = child(HOLDER, p)
    c.expect("locked")
    lock = holdfast.Lock(p)
    with pytest.raises(holdfast.WouldBlock) as e:
        lock.acquire(blocking=False)
    assert isinstance(e.value, BlockingIOError) and isinstance(e.value, holdfast.Error)
    assert e.value.path == p and e.value.filename == p
    assert [h.pid for h in e.value.holders] == [c.pid]
    assert f"pid {c.pid}" in str(e.value) and p in str(e.value)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        lock.acquire(timeout=0.2)
    assert isinstance(e.value, holdfast.Timeout)
    assert 0.15 < time.monotonic() - t0 < 5
    assert e.value.holders[0].pid == c.pid and "timed out after" in str(e.value)
    assert not lock.locked
    c.send("release")
    c.expect("released")
    with lock.acquire(timeout=BOUND):
        pass


def test_waiter_wakes_when_the_holder_releases(tmp_path, child):
    p = str(tmp_path / "app.lock")
    c = child(HOLDER, p)
    c.expect("locked")
    got = []

    def waiter():
        with holdfast.Lock(p):  # a non-main thread: plain kernel wait
            got.append(time.monotonic())

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)  # let it block (not a synchronisation: the assert below is)
    assert not got
    released = time.monotonic()
    c.send("release")
    t.join(BOUND)
    assert got and got[0] >= released


COUNTER = """
import os, sys, holdfast
path, counter, overlap, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = holdfast.Lock(path)
for _ in range(n):
    with lock:
        # overlap detector: a second holder would find the marker
        fd = os.open(overlap, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with open(counter) as f:
            v = int(f.read())
        with open(counter, "w") as f:
            f.write(str(v + 1))
        os.close(fd)
        os.unlink(overlap)
"""


def test_processes_exclude_each_other_counter_and_overlap(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [
        spawn_worker(COUNTER, str(tmp_path / "c.lock"), str(counter), str(tmp_path / "inside"), "150")
        for _ in range(4)
    ]
    run_all(procs)
    assert counter.read_text() == str(4 * 150)


def test_sigkilled_holder_releases(tmp_path, child):
    p = str(tmp_path / "app.lock")
    c = child(HOLDER, p)
    c.expect("locked")
    c.kill(signal.SIGKILL)
    c.wait()
    with holdfast.Lock(p).acquire(timeout=BOUND) as lock:
        assert lock.token is not None


def test_threads_sharing_one_lock_exclude_each_other(tmp_path):
    lock = holdfast.Lock(tmp_path / "t.lock")
    inside = []
    overlaps = []
    count = [0]

    def work():
        for _ in range(200):
            with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                v = count[0]
                time.sleep(0)
                count[0] = v + 1
                inside.pop()

    ts = [threading.Thread(target=work) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(BOUND * 3)
    assert count[0] == 1200 and not overlaps
    assert not lock.locked


def test_threads_with_separate_locks_exclude_each_other(tmp_path):
    p = tmp_path / "t.lock"
    count = [0]

    def work():
        lock = holdfast.Lock(p)
        for _ in range(100):
            with lock:
                v = count[0]
                time.sleep(0)
                count[0] = v + 1

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(BOUND * 3)
    assert count[0] == 400


def test_same_thread_again_is_already_held_not_a_deadlock(tmp_path):
    lock = holdfast.Lock(tmp_path / "a.lock")
    with lock:
        with pytest.raises(holdfast.AlreadyHeld) as e:
            lock.acquire(timeout=5)
        assert isinstance(e.value, RuntimeError)
    rl = holdfast.Lock(tmp_path / "r.lock", reentrant=True)
    with rl:
        with rl:
            assert rl.locked
        assert rl.locked
        with pytest.raises(holdfast.WouldBlock):
            holdfast.Lock(tmp_path / "r.lock").acquire(blocking=False)
    assert not rl.locked
    with pytest.raises(RuntimeError):
        rl.release()


def test_shared_and_exclusive(tmp_path):
    p = tmp_path / "s.lock"
    a = holdfast.Lock(p, shared=True)
    b = holdfast.Lock(p, shared=True)
    with a, b:
        assert a.mode == "shared" and a.token is None
        with pytest.raises(holdfast.WouldBlock):
            holdfast.Lock(p).acquire(blocking=False)
        assert holdfast.status(p).mode == "shared"
    w = holdfast.Lock(p, backend="ofd")
    w.acquire(shared=True)
    w.upgrade(timeout=1)
    assert w.mode == "exclusive"
    w.downgrade()
    assert w.mode == "shared"
    w.release()


def test_fork_child_never_releases_the_parents_lock(tmp_path):
    p = tmp_path / "f.lock"
    lock = holdfast.Lock(p)
    lock.acquire()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            lock.release()  # must not unlock the parent's lock
            del lock
            ok = True
            try:
                holdfast.Lock(p).acquire(blocking=False)
                ok = False
            except holdfast.WouldBlock:
                pass
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1", "the child could take the lock: the parent's was released"
    os.waitpid(pid, 0)
    with pytest.raises(holdfast.WouldBlock):
        holdfast.Lock(p).acquire(blocking=False)
    lock.release()


def _mp_worker(path: str, counter: str, n: int) -> None:
    lock = holdfast.Lock(path)
    for _ in range(n):
        with lock:
            with open(counter) as f:
                v = int(f.read())
            with open(counter, "w") as f:
                f.write(str(v + 1))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing(tmp_path, method):
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context(method)
    ps = [ctx.Process(target=_mp_worker, args=(str(tmp_path / "m.lock"), str(counter), 100)) for _ in range(3)]
    for pr in ps:
        pr.start()
    for pr in ps:
        pr.join(BOUND * 3)
        assert pr.exitcode == 0
    assert counter.read_text() == "300"


KEYBOARD = """
import os, sys, holdfast
lock = holdfast.Lock(sys.argv[1])
print("waiting", flush=True)
try:
    lock.acquire(timeout=%s)
    print("acquired", flush=True)
except KeyboardInterrupt:
    print("interrupted", lock.locked, flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("timeout", ["None", "60"])
def test_ctrl_c_interrupts_a_wait_and_leaves_nothing_held(tmp_path, child, timeout):
    p = str(tmp_path / "k.lock")
    holder = holdfast.Lock(p)
    holder.acquire()
    c = child(KEYBOARD % timeout, p)
    c.expect("waiting")
    # Wait (bounded) until the child really waits in the kernel: its
    # waiter task (a child process of it, blocked in the lock call) exists.
    deadline = time.monotonic() + BOUND
    while not _children_of(c.pid):
        assert time.monotonic() < deadline, "the child never started waiting for the lock"
        time.sleep(0.01)
    c.kill(signal.SIGINT)
    assert c.expect("interrupted") == "interrupted False"
    holder.release()
    # The interrupted waiter holds nothing: another acquirer gets it at once.
    with holdfast.Lock(p).acquire(blocking=False):
        pass
    c.send("bye")


def _children_of(pid: int) -> list:
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            kids.append(int(d))
    return kids
