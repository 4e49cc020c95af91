"""flufl.lock's documented API, run against flufl.lock itself and against
holdfast.compat.flufl_lock; interop both ways on one path."""

from __future__ import annotations

import datetime
import os
import time

import pytest
from compat_support import children, counting_run, load, original_bug, pair  # noqa: F401 (children is a fixture)

fl = pair("flufl.lock", "holdfast.compat.flufl_lock")


def test_public_names(fl):
    orig = load("flufl.lock")
    assert sorted(fl.__all__) == sorted(orig.__all__)
    assert issubclass(fl.AlreadyLockedError, fl.LockError)
    assert issubclass(fl.NotLockedError, fl.LockError)
    assert issubclass(fl.TimeOutError, fl.LockError)
    assert fl.SEP == "|"
    assert [s.name for s in fl.LockState] == ["unlocked", "ours", "ours_expired", "stale", "theirs_expired",
                                              "unknown"]
    assert fl.LockState.unlocked.value == 1 and fl.LockState.unknown.value == 6


def test_lock_unlock(fl, tmp_path):
    path = str(tmp_path / "x.lck")
    lock = fl.Lock(path)
    assert lock.lockfile == path
    assert lock.lifetime == datetime.timedelta(seconds=15)
    assert not lock.is_locked
    assert lock.state == fl.LockState.unlocked
    lock.lock()
    assert lock.is_locked
    assert lock.state == fl.LockState.ours
    with pytest.raises(fl.AlreadyLockedError):
        lock.lock()
    hostname, pid, lockfile = lock.details
    assert (hostname, pid, lockfile) == (lock.hostname, os.getpid(), path)
    with open(path) as f:
        assert f.read() == lock.claimfile
    assert lock.claimfile.startswith(f"{path}|{lock.hostname}|{os.getpid()}|")
    assert os.stat(path).st_nlink == 2
    lock.unlock()
    assert not lock.is_locked
    assert not os.path.exists(path)
    assert [n for n in os.listdir(tmp_path)] == [], "unlock removes the lock file and the claim"
    with pytest.raises(fl.NotLockedError):
        lock.unlock()
    lock.unlock(unconditionally=True)
    with pytest.raises(fl.NotLockedError):
        lock.details
    with pytest.raises(fl.NotLockedError):
        lock.refresh()
    lock.refresh(unconditionally=True)


def test_context_manager_and_lifetime(fl, tmp_path):
    path = str(tmp_path / "y.lck")
    with fl.Lock(path, lifetime=30) as lock:
        assert lock.lifetime == datetime.timedelta(seconds=30)
        left = (lock.expiration - datetime.datetime.now()).total_seconds()
        assert 20 < left <= 31
        lock.refresh(lifetime=datetime.timedelta(seconds=100))
        assert lock.lifetime == datetime.timedelta(seconds=100)
        left = (lock.expiration - datetime.datetime.now()).total_seconds()
        assert 90 < left <= 101
    assert not os.path.exists(path)
    lock = fl.Lock(path)
    lock.lifetime = 7
    assert lock.lifetime == datetime.timedelta(seconds=7)


def test_timeout_against_other_process(fl, tmp_path, children):
    path = str(tmp_path / "t.lck")
    h = children.worker("flufl", "original", "hold", path)
    h.expect("held")
    lock = fl.Lock(path, default_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(fl.TimeOutError):
        lock.lock()
    assert time.monotonic() - t0 >= 0.9
    with pytest.raises(fl.TimeOutError):
        lock.lock(timeout=datetime.timedelta(seconds=1))
    assert not lock.is_locked
    assert lock.state == fl.LockState.unknown  # held by another live process
    assert lock.details[1] == h.pid
    h.send("go")
    h.expect("released")
    lock.lock(timeout=10)
    lock.unlock()


def test_state_stale_after_sigkill(fl, tmp_path, children):
    path = str(tmp_path / "s.lck")
    h = children.worker("flufl", "original", "hold", path)
    h.expect("held")
    h.kill()
    assert fl.Lock(path).state == fl.LockState.stale


def test_float_timeout(fl, tmp_path, request):
    """flufl.lock: a float timeout raises TypeError."""
    original_bug(request, "lock(timeout=0.5) raises TypeError")
    with fl.Lock(str(tmp_path / "f.lck")) as lock:
        other = fl.Lock(str(tmp_path / "f.lck"))
        with pytest.raises(fl.TimeOutError):
            other.lock(timeout=0.5)
        assert lock.is_locked


def test_live_holder_keeps_its_lock_past_lifetime(fl, tmp_path, children, request):
    """flufl.lock: a holder working longer than its lifetime has its lock
    broken by the next waiter while it still runs."""
    original_bug(request, "a live holder's lock is broken once its lifetime (+10 s) has passed")
    path = str(tmp_path / "live.lck")
    env = dict(os.environ, HF_FLUFL_LIFETIME="1")
    h = children.worker("flufl", request.node.impl, "hold", path, env=env)
    h.expect("held")
    waiter = fl.Lock(path, lifetime=1)
    with pytest.raises(fl.TimeOutError):
        waiter.lock(timeout=14)


# --- interop with the real flufl.lock ----------------------------------------------------------

def test_interop_counter(tmp_path, children):
    load("flufl.lock")
    counting_run(children, "flufl", "original", "flufl", "compat", str(tmp_path / "c.lck"), str(tmp_path), n=4,
                 procs_each=1)


@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_holder_seen(holder_impl, tmp_path, children):
    load("flufl.lock")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "h.lck")
    h = children.worker("flufl", holder_impl, "hold", path)
    h.expect("held")
    assert "busy" in children.worker("flufl", other, "try", path, "1").result()
    mod = load("flufl.lock" if other == "original" else "holdfast.compat.flufl_lock")
    assert mod.Lock(path).details[1] == h.pid
    h.send("go")
    h.expect("released")
    assert "got" in children.worker("flufl", other, "try", path, "10").result()


@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_sigkilled_holder_recovered(holder_impl, tmp_path, children):
    """A killed holder's lock is broken after its lease + 10 s, as flufl.lock does."""
    load("flufl.lock")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "k.lck")
    env = dict(os.environ, HF_FLUFL_LIFETIME="1")
    h = children.worker("flufl", holder_impl, "hold", path, env=env)
    h.expect("held")
    h.kill()
    assert "got" in children.worker("flufl", other, "try", path, "25", env=env).result(timeout=60)
