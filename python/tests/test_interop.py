"""The Python originals and holdfast on the same path, both directions."""

from __future__ import annotations

import datetime
import os

import pytest

import holdfast
from conftest import BOUND, has_module


def test_filelock_and_holdfast_exclude_each_other(tmp_path, child):
    filelock = has_module("filelock")
    if filelock is None:
        pytest.skip("filelock not installed")
    p = str(tmp_path / "f.lock")
    with holdfast.Lock(p):
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(p).acquire(timeout=0.1)
    c = child(
        """
import sys, filelock
l = filelock.FileLock(sys.argv[1]); l.acquire()
print("locked", flush=True); sys.stdin.readline()
""",
        p,
    )
    c.expect("locked")
    with pytest.raises(holdfast.WouldBlock) as e:
        holdfast.Lock(p).acquire(blocking=False)
    assert e.value.holders and e.value.holders[0].pid == c.pid  # named from the kernel
    c.kill()
    c.wait()
    with holdfast.Lock(p).acquire(timeout=BOUND):
        pass


def test_portalocker_and_holdfast_exclude_each_other(tmp_path):
    portalocker = has_module("portalocker")
    if portalocker is None:
        pytest.skip("portalocker not installed")
    p = str(tmp_path / "p.lock")
    with holdfast.Lock(p):
        with pytest.raises(portalocker.exceptions.LockException):
            with open(p, "a") as f:
                portalocker.lock(f, portalocker.LOCK_EX | portalocker.LOCK_NB)
    with open(p, "a") as f:
        portalocker.lock(f, portalocker.LOCK_EX | portalocker.LOCK_NB)
        with pytest.raises(holdfast.WouldBlock):
            holdfast.Lock(p).acquire(blocking=False)
        portalocker.unlock(f)


def test_softfilelock_and_lockfile_soft_filelock_format(tmp_path):
    filelock = has_module("filelock")
    if filelock is None:
        pytest.skip("filelock not installed")
    p = str(tmp_path / "s.lock")
    soft = filelock.SoftFileLock(p)
    soft.acquire(timeout=1)
    st = holdfast.inspect(p)
    assert st.kind == "lockfile" and st.locked and st.holder.pid == os.getpid()
    hf = holdfast.LockFile(p, "soft", compat="filelock")
    with pytest.raises(holdfast.WouldBlock):
        hf.acquire(blocking=False)
    soft.release()
    with hf.acquire(timeout=BOUND):
        with pytest.raises(filelock.Timeout):
            filelock.SoftFileLock(p).acquire(timeout=0.1)


def test_flufl_lock_and_link_lock(tmp_path):
    flufl = has_module("flufl.lock")
    if flufl is None:
        pytest.skip("flufl.lock not installed")
    from flufl.lock import Lock as FluflLock, TimeOutError

    p = str(tmp_path / "fl.lock")
    fl = FluflLock(p, lifetime=60)
    fl.lock(timeout=1)
    hf = holdfast.LockFile(p, "link", compat="flufl")
    with pytest.raises(holdfast.WouldBlock) as e:
        hf.acquire(blocking=False)
    assert p in str(e.value)
    fl.unlock()
    with hf.acquire(timeout=BOUND):
        with pytest.raises(TimeOutError):
            FluflLock(p, lifetime=60).lock(timeout=datetime.timedelta(seconds=0.2))


def test_lockfile_mkdir_format(tmp_path):
    lockfile = has_module("lockfile")
    if lockfile is None:
        pytest.skip("lockfile not installed")
    from lockfile.mkdirlockfile import MkdirLockFile

    base = str(tmp_path / "data")
    theirs = MkdirLockFile(base, threaded=False)
    theirs.acquire(timeout=1)
    mine = holdfast.LockFile(base, "mkdir", compat="lockfile")
    assert mine.path == base + ".lock"
    with pytest.raises(holdfast.WouldBlock):
        mine.acquire(blocking=False)
    theirs.release()
    with mine.acquire(timeout=BOUND):
        assert MkdirLockFile(base, threaded=False).is_locked()


def test_phaselock_reads_holdfast_markers_and_back(tmp_path):
    phaselock = has_module("phaselock")
    if phaselock is None:
        pytest.skip("phaselock not installed")
    target = tmp_path / "t.db"
    target.write_text("")
    ran = []
    holdfast.PhaseRunner(target).run([holdfast.Phase("schema", lambda ctx: ran.append("hf"))])
    svc = phaselock.PhaseLockService(str(target))
    assert svc.has_phase("schema")
    res = svc.run_phases([phaselock.Phase("schema", lambda: ran.append("pl")), phaselock.Phase("seed", lambda: ran.append("pl-seed"))])
    assert ran == ["hf", "pl-seed"]
    r = holdfast.PhaseRunner(target).run([holdfast.Phase("schema", lambda c: ran.append("x")), holdfast.Phase("seed", lambda c: ran.append("x"))])
    assert r.skipped == ("schema", "seed") and ran == ["hf", "pl-seed"]
    del res
    # And the lock: phaselock's AdvisoryFileLock on TARGET.lock excludes ours.
    with holdfast.Lock(str(target) + ".lock"):
        with pytest.raises(phaselock.PhaseLockTimeout):
            phaselock.PhaseLockService(str(target), timeout=0.2).run_phases([phaselock.Phase("other", lambda: None)])
