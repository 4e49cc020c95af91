"""libvcs's file_lock API (as its docs and docstrings state it), run against
holdfast.compat.libvcs_file_lock, and against libvcs's module when it is
importable (it is in no PyPI release; peer-protocols.md section 4). Interop
runs against a model of its protocol (peer_worker.LibvcsProtocolPeer)
unless the real module is importable."""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import time

import pytest
from compat_support import children, counting_run  # noqa: F401 (children is a fixture)


@pytest.fixture(params=["original", "compat"])
def lv(request):
    request.node.impl = request.param
    if request.param == "original":
        try:
            return importlib.import_module("libvcs._internal.file_lock")
        except ImportError:
            pytest.skip("libvcs's file_lock is in no libvcs release (only on its pr/file-lock branches)")
    return importlib.import_module("holdfast.compat.libvcs_file_lock")


def test_public_names(lv):
    assert sorted(lv.__all__) == sorted([
        "AcquireReturnProxy", "AsyncAcquireReturnProxy", "AsyncFileLock", "FileLock", "FileLockContext",
        "FileLockError", "FileLockStale", "FileLockTimeout", "async_atomic_init", "atomic_init"])
    e = lv.FileLockTimeout("/tmp/my.lock", 30.0)
    assert isinstance(e, TimeoutError) and isinstance(e, lv.FileLockError)
    assert str(e) == "Timeout (30.0s) waiting for lock: /tmp/my.lock"
    assert (e.lock_file, e.timeout) == ("/tmp/my.lock", 30.0)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.lock_file, e2.timeout) == (e.lock_file, e.timeout)
    assert str(lv.FileLockStale("/tmp/my.lock", 3600.0)) == "Stale lock (3600.0s old): /tmp/my.lock"
    ctx = lv.FileLockContext("/tmp/my.lock")
    assert (ctx.timeout, ctx.poll_interval, ctx.stale_timeout, ctx.mode, ctx.lock_counter, ctx.is_locked) == (
        -1.0, 0.05, 300.0, 0o644, 0, False)


def test_lock_reentrant_and_file(lv, tmp_path):
    path = tmp_path / "my.lock"
    lock = lv.FileLock(path)
    assert lock.lock_file == str(path)
    with lock:
        assert lock.is_locked and path.exists()
        assert path.read_text().split("\n")[0] == str(os.getpid())
        with lock.acquire(timeout=5.0):
            assert lock.lock_counter == 2
        assert lock.lock_counter == 1
    assert not lock.is_locked and not path.exists()
    lock.acquire()
    lock.acquire()
    lock.release(force=True)
    assert lock.lock_counter == 0 and not path.exists()
    lock.release()


def test_timeout_and_nonblocking(lv, tmp_path, children):
    path = tmp_path / "t.lock"
    with lv.FileLock(path):
        other = lv.FileLock(path, timeout=0)
        with pytest.raises(lv.FileLockTimeout):
            other.acquire()
        with pytest.raises(lv.FileLockTimeout):
            lv.FileLock(path).acquire(blocking=False)
    h = children.worker("libvcs", "compat", "hold", str(path))
    h.expect("held")
    t0 = time.monotonic()
    with pytest.raises(lv.FileLockTimeout) as info:
        lv.FileLock(path).acquire(timeout=0.3)
    assert time.monotonic() - t0 >= 0.25
    assert info.value.lock_file == str(path)


def test_async(lv, tmp_path):
    path = tmp_path / "a.lock"

    async def main():
        async with lv.AsyncFileLock(path) as lock:
            assert lock.is_locked
            with pytest.raises(lv.FileLockTimeout):
                await lv.AsyncFileLock(path).acquire(timeout=0.2)
        lock = lv.AsyncFileLock(path)
        proxy = await lock.acquire()
        async with proxy:
            assert lock.lock_counter == 1
        assert not lock.is_locked

    asyncio.run(main())


def test_atomic_init(lv, tmp_path):
    res = tmp_path / "resource"
    res.mkdir()
    calls = []
    assert lv.atomic_init(res, lambda: calls.append(1)) is True
    assert lv.atomic_init(res, lambda: calls.append(1)) is False
    assert calls == [1]
    assert (res / ".initialized").exists()
    assert not (tmp_path / ".resource.lock").exists()

    async def ainit():
        await asyncio.sleep(0)
        calls.append(2)

    res2 = tmp_path / "r2"
    res2.mkdir()
    assert asyncio.run(lv.async_atomic_init(res2, ainit)) is True
    assert asyncio.run(lv.async_atomic_init(res2, ainit)) is False
    assert calls == [1, 2]


def test_long_holder_keeps_its_lock(tmp_path, children):
    """libvcs deletes a lock older than stale_timeout even while its holder
    works (lost updates); the compat holder keeps its lock fresh, so the
    libvcs protocol's own age rule does not break it."""
    path = str(tmp_path / "long.lock")
    env = dict(os.environ, HF_LIBVCS_STALE="1")
    h = children.worker("libvcs", "compat", "hold", path, env=env)
    h.expect("held")
    assert "busy" in children.worker("libvcs", "original", "try", path, "2.5", env=env).result()
    h.send("go")
    h.expect("released")


def test_original_long_holder_loses_its_lock(tmp_path, children):
    """The bug the compat module fixes, shown on the protocol itself: a
    libvcs holder older than stale_timeout is broken by the next waiter."""
    path = str(tmp_path / "bug.lock")
    env = dict(os.environ, HF_LIBVCS_STALE="1")
    h = children.worker("libvcs", "original", "hold", path, env=env)
    h.expect("held")
    assert "got" in children.worker("libvcs", "original", "try", path, "5", env=env).result()


# --- interop --------------------------------------------------------------------------------------

def test_interop_counter(tmp_path, children):
    counting_run(children, "libvcs", "original", "libvcs", "compat", str(tmp_path / "c.lock"), str(tmp_path), n=20)


def test_interop_holder_seen(tmp_path, children):
    for holder, other in (("original", "compat"), ("compat", "original")):
        path = str(tmp_path / f"h-{holder}.lock")
        h = children.worker("libvcs", holder, "hold", path)
        h.expect("held")
        assert "busy" in children.worker("libvcs", other, "try", path, "0.3").result()
        h.send("go")
        h.expect("released")
        assert "got" in children.worker("libvcs", other, "try", path, "5").result()


def test_interop_sigkilled_holder(tmp_path, children):
    """A killed libvcs holder is broken by the compat waiter once its lock is
    stale_timeout old (libvcs's rule); a killed compat holder is recovered
    by a compat waiter at once (its record proves it dead)."""
    env = dict(os.environ, HF_LIBVCS_STALE="1")
    path = str(tmp_path / "k1.lock")
    h = children.worker("libvcs", "original", "hold", path, env=env)
    h.expect("held")
    h.kill()
    assert "got" in children.worker("libvcs", "compat", "try", path, "10", env=env).result()
    path = str(tmp_path / "k2.lock")
    h = children.worker("libvcs", "compat", "hold", path)
    h.expect("held")
    h.kill()
    # within 10 s, long before libvcs's 300 s age rule could apply: the record proved it dead
    assert "got" in children.worker("libvcs", "compat", "try", path, "10").result()
