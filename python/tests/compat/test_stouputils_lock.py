"""stouputils' LockFifo / RLockFifo documented API (its doctests' checks),
run against stouputils.lock and holdfast.compat.stouputils_lock; interop
both ways on one path."""

from __future__ import annotations

import os
import time

import pytest
from compat_support import children, counting_run, load, original_bug, pair  # noqa: F401 (children is a fixture)

st = pair("stouputils.lock", "holdfast.compat.stouputils_lock")

HOLD = """
import sys
mod = __import__(sys.argv[1], fromlist=["x"])
lock = mod.LockFifo(sys.argv[2])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
if len(sys.argv) < 4:  # close() while others queue races in stouputils (its queue dir is removed under them)
    lock.close()
print("released", flush=True)
"""

# Takes the lock and reports the ticket it was served with (its arrival number).
TICKET = r"""
import sys
mod = __import__(sys.argv[1], fromlist=["x"])
lock = mod.LockFifo(sys.argv[2], timeout=60)
print("queueing", flush=True)
lock.acquire()
t = int(lock.member.split(".")[0]) if getattr(lock, "member", None) else lock.get_ticket()
with open(sys.argv[3], "a") as f:  # under the lock: the file's order is the order of service
    f.write(f"{t}\n")
print("got", t, flush=True)
lock.release()
"""


def test_public_names(st):
    for name in ("LockFifo", "RLockFifo", "LockError", "LockTimeoutError", "resolve_path", "wait_or_raise",
                 "resolve_acquire_defaults"):
        assert hasattr(st, name), name
    assert issubclass(st.LockError, RuntimeError)
    assert issubclass(st.LockTimeoutError, TimeoutError) and issubclass(st.LockTimeoutError, st.LockError)
    assert issubclass(st.RLockFifo, st.LockFifo)


def test_basic_and_bare_name(st, tmp_path):
    name = f"hf-compat-{os.getpid()}-{id(st)}.lock"
    with st.LockFifo(name, timeout=1) as lock:
        assert lock.is_locked
        assert os.path.dirname(lock.path) == __import__("tempfile").gettempdir()
    lock.close()
    lock = st.LockFifo(str(tmp_path / "my.lock"), timeout=1)
    lock.acquire()
    assert lock.is_locked
    lock.release()
    assert not lock.is_locked
    lock.close()


def test_close_cleans_up(st, tmp_path):
    p = str(tmp_path / "tlock")
    lock = st.LockFifo(p, timeout=1)
    lock.acquire()
    lock.release()
    lock.close()
    assert not os.path.exists(p)
    assert not os.path.exists(p + ".queue")
    p2 = str(tmp_path / "tlock2")
    l2 = st.LockFifo(p2, fifo=False, timeout=1)
    l2.acquire()
    l2.release()
    l2.close()
    assert not os.path.exists(p2 + ".queue")


def test_nonblocking_and_timeout_against_other_process(st, tmp_path, children):
    p = str(tmp_path / "nb.lock")
    h = children.python(HOLD, st.__name__, p)
    h.expect("held")
    with pytest.raises(st.LockTimeoutError):
        st.LockFifo(p, timeout=1).acquire(blocking=False)
    t0 = time.monotonic()
    with pytest.raises(st.LockTimeoutError):
        st.LockFifo(p, timeout=0.3).acquire()
    assert time.monotonic() - t0 >= 0.25
    h.send("go")
    h.expect("released")
    with st.LockFifo(p, timeout=5):
        pass


def test_rlock_reentrant(st, tmp_path):
    p = str(tmp_path / "rlock")
    r = st.RLockFifo(p, fifo=True, timeout=1)
    r.acquire()
    r.acquire()
    r.release()
    assert r.is_locked
    r.release()
    assert not r.is_locked
    r.close()
    assert not os.path.exists(p + ".queue")


def test_fifo_order_across_processes(st, tmp_path, children, request):
    """Waiters are served in ticket (arrival) order."""
    original_bug(request, "stouputils' queue loses arrival order in some runs (a waiter that is not the head "
                          "gets the lock; peer-protocols.md section 6)", racy=True)
    p = str(tmp_path / "fifo.lock")
    log = str(tmp_path / "served")
    h = children.python(HOLD, st.__name__, p, "no-close")
    h.expect("held")
    waiters = []
    for _ in range(4):
        w = children.python(TICKET, st.__name__, p, log)
        w.expect("queueing")
        waiters.append(w)
    h.send("go")
    h.expect("released")
    for w in waiters:
        w.expect("got")
    with open(log) as f:
        served = [int(x) for x in f.read().split()]
    assert len(served) == 4 and len(set(served)) == 4
    assert served == sorted(served), f"served out of arrival order: {served}"


def test_killed_holder_does_not_wedge_the_queue(st, tmp_path, children, request):
    """stouputils: a SIGKILLed holder's ticket stays at the head; with the
    default timeout=None every later LockFifo waits forever."""
    original_bug(request, "a killed holder's ticket wedges the queue")
    p = str(tmp_path / "wedge.lock")
    h = children.python(HOLD, st.__name__, p)
    h.expect("held")
    h.kill()
    w = children.python("import sys\nmod = __import__(sys.argv[1], fromlist=['x'])\n"
                        "l = mod.LockFifo(sys.argv[2])\nl.acquire()\nprint('got', flush=True)\nl.release()\n",
                        st.__name__, p)
    w.expect("got", timeout=5)


# --- interop with the real stouputils ----------------------------------------------------------

def test_interop_counter(tmp_path, children):
    load("stouputils.lock")
    counting_run(children, "stouputils", "original", "stouputils", "compat", str(tmp_path / "c.lock"),
                 str(tmp_path), n=20)


@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_holder_seen_and_sigkill(holder_impl, tmp_path, children):
    load("stouputils.lock")
    other = "compat" if holder_impl == "original" else "original"
    p = str(tmp_path / "h.lock")
    h = children.worker("stouputils", holder_impl, "hold", p)
    h.expect("held")
    assert "busy" in children.worker("stouputils", other, "try", p, "0.3").result()
    h.kill()
    # a killed stouputils holder leaves its ticket behind: stouputils waiters need a timeout to get past it
    assert "got" in children.worker("stouputils", other, "try", p, "5").result()
