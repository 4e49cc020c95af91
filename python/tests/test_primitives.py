"""LockFile, FifoLock, Semaphore, phases, run-once, status/inspect, CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import holdfast
from conftest import BOUND, run_all, spawn_worker


def test_lockfile_protocols_and_stale_takeover(tmp_path, child):
    for protocol in ("soft", "link", "mkdir"):
        p = str(tmp_path / f"{protocol}.lock")
        c = child(
            """
import sys, holdfast
lf = holdfast.LockFile(sys.argv[1], sys.argv[2])
lf.acquire()
print("locked", flush=True)
sys.stdin.readline()
""",
            p,
            protocol,
        )
        c.expect("locked")
        lf = holdfast.LockFile(p, protocol)
        st = holdfast.inspect(p)
        assert st.kind == "lockfile" and st.protocol == protocol and st.locked
        assert st.holder is not None and st.holder.pid == c.pid
        with pytest.raises(holdfast.WouldBlock) as e:
            lf.acquire(blocking=False)
        assert f"pid {c.pid}" in str(e.value)
        assert not lf.break_lock(), "a live holder's lock was broken"
        c.kill(signal.SIGKILL)
        c.wait()
        # The dead holder's lock is stale: taken over (waiting by inotify).
        assert lf.is_locked() and not lf.i_am_locking() and not lf.locked
        with lf.acquire(timeout=BOUND):
            assert lf.i_am_locking() and lf.locked
            lf.refresh() if lf.lifetime else None
        assert not holdfast.inspect(p).locked


FIFO_WORKER = """
import sys, holdfast
lock = holdfast.FifoLock(sys.argv[1])
print("queued", flush=True)
with lock:
    with open(sys.argv[2], "a") as f:
        f.write(sys.argv[3] + "\\n")
"""


def test_fifo_serves_in_arrival_order(tmp_path, child):
    p = str(tmp_path / "q.lock")
    order = tmp_path / "order"
    first = holdfast.FifoLock(p)
    first.acquire()
    kids = []
    for i in range(4):
        c = child(FIFO_WORKER, p, str(order), str(i))
        c.expect("queued")
        # Wait (bounded) until it has taken its ticket: the queue grows.
        deadline = time.monotonic() + BOUND
        while first.queue_len() < i + 2:
            assert time.monotonic() < deadline, f"worker {i} never queued"
            time.sleep(0.005)
        kids.append(c)
    first.release()
    for c in kids:
        assert c.wait() == 0, c.stderr()
    assert order.read_text().split() == ["0", "1", "2", "3"]


SEM_WORKER = """
import os, sys, time, holdfast
sem = holdfast.Semaphore(sys.argv[1], 2)
for _ in range(10):
    with sem:
        fd = os.open(sys.argv[2], os.O_CREAT | os.O_RDWR)
        os.lockf(fd, os.F_LOCK, 0)
        n = int(os.pread(fd, 16, 0) or b"0") + 1
        peak = int(os.pread(fd, 16, 16) or b"0")
        os.pwrite(fd, b"%-16d%-16d" % (n, max(n, peak)), 0)
        os.lockf(fd, os.F_ULOCK, 0)
        time.sleep(0.002)
        os.lockf(fd, os.F_LOCK, 0)
        n = int(os.pread(fd, 16, 0)) - 1
        peak = int(os.pread(fd, 16, 16))
        os.pwrite(fd, b"%-16d%-16d" % (n, peak), 0)
        os.lockf(fd, os.F_ULOCK, 0)
        os.close(fd)
"""


def test_semaphore_admits_at_most_n(tmp_path):
    gauge = tmp_path / "gauge"
    run_all([spawn_worker(SEM_WORKER, str(tmp_path / "s"), str(gauge)) for _ in range(5)])
    data = gauge.read_bytes()
    assert int(data[:16]) == 0
    assert 1 <= int(data[16:32]) <= 2, f"peak {int(data[16:32])} holders at once"
    sem = holdfast.Semaphore(tmp_path / "s", 2)
    assert sem.available() == 2
    with sem:
        assert sem.available() == 1 and sem.slot is not None


def test_semaphore_slot_of_a_killed_holder_comes_back(tmp_path, child):
    p = str(tmp_path / "s")
    c = child(
        """
import sys, holdfast
s = holdfast.Semaphore(sys.argv[1], 1)
s.acquire()
print("held", flush=True)
sys.stdin.readline()
""",
        p,
    )
    c.expect("held")
    sem = holdfast.Semaphore(p, 1)
    with pytest.raises(holdfast.WouldBlock):
        sem.acquire(blocking=False)
    c.kill()
    c.wait()
    with sem.acquire(timeout=BOUND):
        pass


def test_phases_run_once_mark_skip_and_propagate(tmp_path):
    target = tmp_path / "app.db"
    target.write_text("")
    log = []
    runner = holdfast.PhaseRunner(target, xattrs="auto")

    class Boom(Exception):
        pass

    def boom(ctx):
        log.append(("boom", ctx.name))
        raise Boom("no")

    def ok(ctx):
        assert ctx.token is not None and ctx.lock_path == runner.lock_path
        assert ctx.target == str(target)
        log.append(("ok", ctx.name, ctx.token))

    with pytest.raises(Boom):
        runner.run([holdfast.Phase("a", ok), holdfast.Phase("b", boom), holdfast.Phase("c", ok)])
    assert runner.is_done("a") and not runner.is_done("b") and not runner.is_done("c")
    r = runner.run([holdfast.Phase("a", ok), holdfast.Phase("b", ok), holdfast.Phase("c", ok)])
    assert r.completed == ("b", "c") and r.skipped == ("a",) and r.locked
    r = runner.run([holdfast.Phase("a", ok), holdfast.Phase("b", ok), holdfast.Phase("c", ok)])
    assert r.completed == () and r.skipped == ("a", "b", "c") and not r.locked
    assert sorted(runner.done()) == ["a", "b", "c"]
    assert sorted(runner.reset()) == ["a", "b", "c"]
    assert runner.done() == []
    with pytest.raises(holdfast.InvalidInput):
        runner.run([holdfast.Phase("two\nlines", ok)])
    with pytest.raises(TypeError):
        runner.run(["a"])  # type: ignore[list-item]


def test_once_runs_once_across_processes(tmp_path):
    key = tmp_path / "migrated"
    counter = tmp_path / "ran"
    code = """
import os, sys, holdfast
def act(ctx):
    with open(sys.argv[2], "a") as f:
        f.write("x")
r = holdfast.once(sys.argv[1], act)
print(r.ran)
"""
    procs = [spawn_worker(code, str(key), str(counter)) for _ in range(4)]
    run_all(procs)
    assert counter.read_text() == "x"
    assert key.exists()
    r = holdfast.once(key, lambda ctx: pytest.fail("ran twice"))
    assert not r.ran and not r


def test_once_failure_leaves_it_undone(tmp_path):
    key = tmp_path / "k"
    with pytest.raises(ZeroDivisionError):
        holdfast.once(key, lambda ctx: 1 / 0)
    assert not key.exists()
    assert holdfast.once(key, lambda ctx: None).ran


def test_status_and_inspect_of_a_kernel_lock(tmp_path):
    p = tmp_path / "k.lock"
    assert not holdfast.status(p).exists
    with holdfast.Lock(p) as lock:
        st = holdfast.inspect(p)
        assert st.kind == "kernel" and st.locked and st.holder.token == lock.token
    st = holdfast.status(p)
    assert st.exists and not st.locked and st.last_record["token"] == lock.token or True


def test_the_wheel_installs_the_holdfast_command(tmp_path):
    exe = shutil.which("holdfast", path=os.path.dirname(sys.executable))
    assert exe, "the holdfast command is not installed beside this Python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=BOUND)
    assert out.returncode == 0 and out.stdout.startswith("holdfast ")
    p = str(tmp_path / "c.lock")
    r = subprocess.run([exe, "run", p, "--", sys.executable, "-c", "print('inside')"], capture_output=True, text=True, timeout=BOUND)
    assert r.returncode == 0 and r.stdout.strip() == "inside"
    with holdfast.Lock(p):
        r = subprocess.run([exe, "run", "--no-wait", p, "--", "true"], capture_output=True, text=True, timeout=BOUND)
        assert r.returncode == 1 and f"pid {os.getpid()}" in r.stderr
        r = subprocess.run([exe, "flock", "-w", "0.1", p, "true"], capture_output=True, text=True, timeout=BOUND)
        assert r.returncode == 1
    r = subprocess.run([exe, "run", p, "--", "sh", "-c", "exit 7"], timeout=BOUND)
    assert r.returncode == 7
