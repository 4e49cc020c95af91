"""filelock's documented API, run against filelock itself and against
holdfast.compat.filelock; interop both ways on one path."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest
from compat_support import children, FLOCK_HOLDER, counting_run, load, original_bug, pair  # noqa: F401 (children is a fixture)

fl = pair("filelock", "holdfast.compat.filelock")

NAMES = [
    "AcquireReturnProxy", "AsyncAcquireReturnProxy", "AsyncFileLock", "AsyncSoftFileLock", "AsyncUnixFileLock",
    "AsyncWindowsFileLock", "BaseAsyncFileLock", "BaseFileLock", "FileLock", "SoftFileLock", "Timeout",
    "UnixFileLock", "WindowsFileLock", "__version__", "asyncio", "has_fcntl",
]


def test_public_names(fl):
    for name in NAMES:
        assert hasattr(fl, name), name
        assert name in fl.__all__, name
    assert issubclass(fl.Timeout, TimeoutError)
    assert issubclass(fl.FileLock, fl.BaseFileLock)
    assert issubclass(fl.SoftFileLock, fl.BaseFileLock)
    assert issubclass(fl.AsyncFileLock, fl.BaseAsyncFileLock)
    assert fl.FileLock is fl.UnixFileLock
    assert fl.asyncio.AsyncSoftFileLock is fl.AsyncSoftFileLock


def test_acquire_release_reentrant(fl, tmp_path):
    lock = fl.FileLock(tmp_path / "a.lock")
    assert not lock.is_locked and lock.lock_counter == 0
    assert lock.lock_file == str(tmp_path / "a.lock")
    with lock:
        assert lock.is_locked and lock.lock_counter == 1
        with lock.acquire():
            assert lock.lock_counter == 2
        assert lock.is_locked and lock.lock_counter == 1
    assert not lock.is_locked and lock.lock_counter == 0
    assert os.path.exists(tmp_path / "a.lock"), "a Unix FileLock never deletes its file"
    lock.acquire()
    lock.acquire()
    lock.release(force=True)
    assert not lock.is_locked and lock.lock_counter == 0
    lock.release()  # releasing an unlocked lock is a no-op


def test_defaults(fl, tmp_path):
    lock = fl.FileLock(str(tmp_path / "d.lock"))
    assert lock.timeout == -1
    assert lock.blocking is True
    assert lock.poll_interval == 0.05
    assert lock.is_thread_local() is True
    assert lock.is_singleton is False
    lock.timeout = 2.5
    assert lock.timeout == 2.5
    lock.blocking = False
    assert lock.blocking is False


def test_timeout_against_other_process(fl, tmp_path, children):
    path = str(tmp_path / "t.lock")
    holder = children.python(FLOCK_HOLDER, path)
    holder.expect("held")
    lock = fl.FileLock(path, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(fl.Timeout) as info:
        lock.acquire()
    assert time.monotonic() - t0 >= 0.15
    assert isinstance(info.value, TimeoutError)
    assert info.value.lock_file == path
    assert path in str(info.value)
    assert not lock.is_locked and lock.lock_counter == 0
    with pytest.raises(fl.Timeout):
        lock.acquire(blocking=False)
    with pytest.raises(fl.Timeout):
        lock.acquire(timeout=0)
    holder.send("go")
    holder.wait()
    with lock.acquire(timeout=5):
        assert lock.is_locked


def test_threads_exclude_with_thread_local(fl, tmp_path):
    lock = fl.FileLock(tmp_path / "th.lock")
    got = []
    with lock:
        def other():
            try:
                lock.acquire(timeout=0.2)
                got.append("acquired")
                lock.release()
            except fl.Timeout:
                got.append("timeout")

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
    assert got == ["timeout"]


def test_not_thread_local_is_reentrant_across_threads(fl, tmp_path):
    lock = fl.FileLock(tmp_path / "nt.lock", thread_local=False)
    counters = []
    with lock:
        def other():
            with lock.acquire(timeout=0.5):
                counters.append(lock.lock_counter)

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
    assert counters == [2]
    assert not lock.is_locked


def test_singleton(fl, tmp_path):
    a = fl.FileLock(tmp_path / "s.lock", is_singleton=True)
    b = fl.FileLock(tmp_path / "s.lock", is_singleton=True)
    c = fl.FileLock(tmp_path / "s.lock")
    assert a is b and a is not c
    with a:
        with b:
            assert a.lock_counter == 2


def test_decorator(fl, tmp_path):
    lock = fl.FileLock(tmp_path / "dec.lock")

    @lock
    def work():
        return lock.is_locked

    assert work() is True
    assert not lock.is_locked


def test_soft_lock_file_and_record(fl, tmp_path):
    path = tmp_path / "soft.lock"
    lock = fl.SoftFileLock(path)
    with lock:
        assert path.exists()
        lines = path.read_text().splitlines()
        assert lines[0] == str(os.getpid())
        assert len(lines) >= 2
        with pytest.raises(fl.Timeout):
            fl.SoftFileLock(path).acquire(timeout=0.1)
    assert not path.exists(), "a soft lock file is removed on release"


def test_mode(fl, tmp_path):
    path = tmp_path / "m.lock"
    with fl.FileLock(path, mode=0o640):
        pass
    assert (os.stat(path).st_mode & 0o777) == 0o640 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_async(fl, tmp_path):
    path = str(tmp_path / "as.lock")

    async def main():
        lock = fl.AsyncFileLock(path)
        async with lock:
            assert lock.is_locked
            other = fl.AsyncFileLock(path)
            with pytest.raises(fl.Timeout):
                await other.acquire(timeout=0.1)
        assert not lock.is_locked
        async with await lock.acquire():
            assert lock.lock_counter == 1
        soft = fl.AsyncSoftFileLock(str(tmp_path / "as-soft.lock"))
        async with soft:
            assert os.path.exists(tmp_path / "as-soft.lock")

    asyncio.run(main())


def test_soft_lifetime_does_not_rob_a_live_holder(fl, tmp_path, children, request):
    """filelock's ``lifetime``: "the age after which a waiting process may
    delete the marker, even while its holder remains alive"."""
    original_bug(request, "SoftFileLock(lifetime=...) lets a waiter delete the lock of a live holder")
    path = str(tmp_path / "life.lock")
    holder = fl.SoftFileLock(path, lifetime=1.0)
    holder.acquire()
    try:
        waiter = fl.SoftFileLock(path, lifetime=1.0)
        with pytest.raises(fl.Timeout):
            waiter.acquire(timeout=3.0)
    finally:
        holder.release()


# --- interop with the real filelock on one path ------------------------------------------------

@pytest.mark.parametrize("lib", ["filelock", "filelock-soft"])
def test_interop_counter(lib, tmp_path, children):
    load("filelock")
    counting_run(children, lib, "original", lib, "compat", str(tmp_path / "c.lock"), str(tmp_path))


@pytest.mark.parametrize("lib", ["filelock", "filelock-soft"])
@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_holder_seen(lib, holder_impl, tmp_path, children):
    load("filelock")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "h.lock")
    h = children.worker(lib, holder_impl, "hold", path)
    h.expect("held")
    assert "busy" in children.worker(lib, other, "try", path, "0.3").result()
    h.send("go")
    h.expect("released")
    assert "got" in children.worker(lib, other, "try", path, "5").result()


def test_compat_timeout_names_an_original_holder(tmp_path, children):
    load("filelock")
    from holdfast.compat import filelock as compat

    path = str(tmp_path / "n.lock")
    h = children.worker("filelock", "original", "hold", path)
    h.expect("held")
    with pytest.raises(compat.Timeout) as info:
        compat.FileLock(path).acquire(timeout=0.1)
    assert str(h.pid) in str(info.value)


@pytest.mark.parametrize("lib", ["filelock", "filelock-soft"])
@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_sigkilled_holder_recovered(lib, holder_impl, tmp_path, children):
    load("filelock")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "k.lock")
    h = children.worker(lib, holder_impl, "hold", path)
    h.expect("held")
    h.kill()
    assert "got" in children.worker(lib, other, "try", path, "10").result()


def test_soft_record_readable_by_original(tmp_path):
    """A compat SoftFileLock's record is filelock's: pid and host lines."""
    load("filelock")
    from holdfast.compat import filelock as compat

    path = tmp_path / "r.lock"
    with compat.SoftFileLock(path):
        pid, host = path.read_text().splitlines()[:2]
    assert pid == str(os.getpid())
    assert host.split("?")[0] == socket.gethostname().split("?")[0]


def test_async_cancelled_acquire_holds_nothing(fl, tmp_path, children):
    """A cancelled (timed-out by asyncio) acquire leaves nothing held."""
    path = str(tmp_path / "cancel.lock")
    h = children.python(FLOCK_HOLDER, path)
    h.expect("held")

    async def main():
        lock = fl.AsyncFileLock(path)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(lock.acquire(), 0.3)
        assert not lock.is_locked and lock.lock_counter == 0
        return lock

    lock = asyncio.run(main())
    h.send("go")
    h.wait()
    other = fl.FileLock(path)
    with other.acquire(timeout=5):
        assert other.is_locked
    del lock
