"""lockfile 0.12.2's documented API (its compliance tests' checks), run
against lockfile itself and against holdfast.compat.lockfile, for the
link, mkdir and pid lock classes; interop both ways on one path."""

from __future__ import annotations

import importlib
import os
import threading
import warnings

import pytest
from compat_support import children, counting_run, load, original_bug, pair  # noqa: F401 (children is a fixture)

lf = pair("lockfile", "holdfast.compat.lockfile")

KINDS = {
    "link": ("linklockfile", "LinkLockFile"),
    "mkdir": ("mkdirlockfile", "MkdirLockFile"),
    "pid": ("pidlockfile", "PIDLockFile"),
}


def cls_of(lf, kind):
    mod, name = KINDS[kind]
    return getattr(importlib.import_module(lf.__name__ + "." + mod), name)


def test_public_names(lf):
    orig = load("lockfile")
    assert sorted(lf.__all__) == sorted(orig.__all__)
    for name in lf.__all__ + ["LockFile", "FileLock"]:
        assert hasattr(lf, name), name
    assert issubclass(lf.LockError, lf.Error) and issubclass(lf.UnlockError, lf.Error)
    for e in (lf.LockTimeout, lf.AlreadyLocked, lf.LockFailed):
        assert issubclass(e, lf.LockError)
    for e in (lf.NotLocked, lf.NotMyLock):
        assert issubclass(e, lf.UnlockError)
    assert lf.FileLock is lf.LockFile
    assert lf.LockFile is cls_of(lf, "link")
    for kind in KINDS:
        assert issubclass(cls_of(lf, kind), lf.LockBase)
    pid = importlib.import_module(lf.__name__ + ".pidlockfile")
    for fn in ("read_pid_from_pidfile", "write_pid_to_pidfile", "remove_existing_pidfile"):
        assert callable(getattr(pid, fn))
    importlib.import_module(lf.__name__ + ".symlinklockfile").SymlinkLockFile
    importlib.import_module(lf.__name__ + ".sqlitelockfile").SQLiteLockFile


@pytest.mark.parametrize("kind", list(KINDS))
def test_acquire_release(lf, kind, tmp_path):
    path = str(tmp_path / "testfile")
    lock = cls_of(lf, kind)(path)
    if kind != "pid":
        assert lock.lock_file == os.path.abspath(path) + ".lock"
    assert not lock.is_locked() and not lock.i_am_locking()
    lock.acquire()
    assert lock.is_locked() and lock.i_am_locking()
    lock.release()
    assert not lock.is_locked()
    with pytest.raises(lf.NotLocked):
        lock.release()
    with lock:
        assert lock.i_am_locking()
    assert not lock.is_locked()


@pytest.mark.parametrize("kind", ["link", "mkdir"])
def test_other_thread_and_nonblocking(lf, kind, tmp_path):
    path = str(tmp_path / "testfile")
    lock = cls_of(lf, kind)(path, threaded=True)
    lock.acquire()
    errors = []

    def other():
        l2 = cls_of(lf, kind)(path, threaded=True)
        try:
            l2.acquire(timeout=-1)
        except lf.AlreadyLocked:
            errors.append("already")
        try:
            l2.acquire(timeout=0.2)
        except lf.LockTimeout:
            errors.append("timeout")
        assert l2.is_locked() and not l2.i_am_locking()
        try:
            l2.release()
        except lf.NotMyLock:
            errors.append("notmine")

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert errors == ["already", "timeout", "notmine"]
    lock.release()


@pytest.mark.parametrize("kind", list(KINDS))
def test_break_lock_of_dead_holder(lf, kind, tmp_path, children):
    path = str(tmp_path / "testfile")
    lib = {"link": "lockfile-link", "mkdir": "lockfile-mkdir", "pid": "lockfile-pid"}[kind]
    h = children.worker(lib, "original", "hold", path)
    h.expect("held")
    h.kill()
    lock = cls_of(lf, kind)(path)
    assert lock.is_locked()
    lock.break_lock()
    assert not lock.is_locked()
    lock.acquire(timeout=1)
    lock.release()


def test_pid_file_content(lf, tmp_path):
    path = str(tmp_path / "app.pid")
    lock = cls_of(lf, "pid")(path)
    with lock:
        assert lock.read_pid() == os.getpid()
        with open(path) as f:
            assert f.readline() == "%d\n" % os.getpid()
    assert lock.read_pid() is None


def test_locked_decorator_and_factories(lf, tmp_path):
    path = str(tmp_path / "dec")

    @lf.locked(path, timeout=1)
    def work():
        return lf.FileLock(path).is_locked()

    assert work() is True
    assert not lf.FileLock(path).is_locked()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        lock = lf.MkdirFileLock(path)
    assert any(issubclass(x.category, DeprecationWarning) for x in w)
    with lock:
        assert lock.i_am_locking()


def test_link_and_mkdir_exclude_each_other(lf, tmp_path):
    path = str(tmp_path / "both")
    link = cls_of(lf, "link")(path)
    mkdir = cls_of(lf, "mkdir")(path)
    with link:
        with pytest.raises(lf.LockTimeout):
            mkdir.acquire(timeout=0.2)
    with mkdir:
        with pytest.raises(lf.LockTimeout):
            link.acquire(timeout=0.2)


@pytest.mark.parametrize("kind", ["link", "mkdir", "pid"])
def test_killed_holder_does_not_wedge_waiters(lf, kind, tmp_path, children, request):
    """lockfile never breaks a lock: a SIGKILLed holder wedges every waiter
    until someone calls break_lock()."""
    original_bug(request, "a lock left by a killed holder is never recovered")
    lib = {"link": "lockfile-link", "mkdir": "lockfile-mkdir", "pid": "lockfile-pid"}[kind]
    path = str(tmp_path / "wedge")
    h = children.worker(lib, request.node.impl, "hold", path)
    h.expect("held")
    h.kill()
    lock = cls_of(lf, kind)(path)
    lock.acquire(timeout=5)
    lock.release()


def test_pid_lock_without_timeout_waits(lf, tmp_path, children, request):
    """lockfile documents timeout=None as "wait forever", but PIDLockFile
    raises AlreadyLocked at the first busy try."""
    original_bug(request, "PIDLockFile.acquire() without a timeout does not wait")
    path = str(tmp_path / "w.pid")
    h = children.worker("lockfile-pid", "original", "hold", path)
    h.expect("held")
    lock = cls_of(lf, "pid")(path)
    done = []
    t = threading.Thread(target=lambda: (lock.acquire(), done.append(lock.read_pid())))
    t.start()
    t.join(0.5)
    assert t.is_alive() and not done, "still waiting for the holder"
    h.send("go")
    h.expect("released")
    t.join(10)
    assert done == [os.getpid()]
    lock.release()


def test_break_lock_spares_a_live_holder(lf, tmp_path, children, request):
    """lockfile's break_lock() removes the lock of a live holder."""
    original_bug(request, "break_lock() is unconditional")
    path = str(tmp_path / "live")
    h = children.worker("lockfile-link", request.node.impl, "hold", path)
    h.expect("held")
    link = cls_of(lf, "link")
    link(path).break_lock()
    assert link(path).is_locked()
    with pytest.raises(lf.LockTimeout):
        link(path).acquire(timeout=0.3)


# --- interop with the real lockfile ------------------------------------------------------------

@pytest.mark.parametrize("lib", ["lockfile-link", "lockfile-mkdir", "lockfile-pid"])
def test_interop_counter(lib, tmp_path, children):
    load("lockfile")
    counting_run(children, lib, "original", lib, "compat", str(tmp_path / "c"), str(tmp_path), n=15)


def test_interop_link_vs_mkdir(tmp_path, children):
    load("lockfile")
    counting_run(children, "lockfile-link", "original", "lockfile-mkdir", "compat", str(tmp_path / "c"),
                 str(tmp_path), n=15)


@pytest.mark.parametrize("lib", ["lockfile-link", "lockfile-mkdir", "lockfile-pid"])
@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_holder_seen(lib, holder_impl, tmp_path, children):
    load("lockfile")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "h")
    h = children.worker(lib, holder_impl, "hold", path)
    h.expect("held")
    assert "busy" in children.worker(lib, other, "try", path, "0.3").result()
    if lib == "lockfile-pid":
        for name in ("lockfile", "holdfast.compat.lockfile"):
            pid = importlib.import_module(name + ".pidlockfile")
            assert pid.PIDLockFile(path).read_pid() == h.pid
    h.send("go")
    h.expect("released")
    assert "got" in children.worker(lib, other, "try", path, "5").result()


@pytest.mark.parametrize("lib", ["lockfile-link", "lockfile-mkdir", "lockfile-pid"])
def test_interop_sigkilled_holder(lib, tmp_path, children):
    """A killed compat holder is recovered by compat waiters; a killed lockfile
    holder is recovered by break_lock() from either side, as lockfile documents."""
    load("lockfile")
    path = str(tmp_path / "k")
    h = children.worker(lib, "compat", "hold", path)
    h.expect("held")
    h.kill()
    assert "got" in children.worker(lib, "compat", "try", path, "5").result()
    h = children.worker(lib, "original", "hold", path)
    h.expect("held")
    h.kill()
    assert "busy" in children.worker(lib, "original", "try", path, "0.3").result()
    from holdfast.compat import lockfile as compat
    kind = {"lockfile-link": "link", "lockfile-mkdir": "mkdir", "lockfile-pid": "pid"}[lib]
    cls_of(compat, kind)(path).break_lock()
    assert "got" in children.worker(lib, "original", "try", path, "5").result()
