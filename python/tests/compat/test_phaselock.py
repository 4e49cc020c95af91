"""phaselock 1.1.0's documented API, run against phaselock itself and
against holdfast.compat.phaselock; markers and exclusion both ways."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from compat_support import children, counting_run, load, original_bug, pair  # noqa: F401 (children is a fixture)

pl = pair("phaselock", "holdfast.compat.phaselock")


def xattrs_work(path: Path) -> bool:
    probe = path / "xattr-probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False


@pytest.fixture
def target(tmp_path):
    t = tmp_path / "app.db"
    t.write_text("")
    return t


def test_public_names(pl):
    orig = load("phaselock")
    assert sorted(pl.__all__) == sorted(orig.__all__)
    for name in pl.__all__:
        assert hasattr(pl, name)
    assert pl.PHASELOCK_ENABLE_XATTRS == "PHASELOCK_ENABLE_XATTRS"
    assert issubclass(pl.PhaseLockTimeout, TimeoutError)
    assert issubclass(pl.PhaseLockUnavailable, RuntimeError)
    assert issubclass(pl.PhaseLockCancelled, RuntimeError)
    assert pl.__version__ == "1.1.0"


def test_phase_names_validated(pl, target):
    svc = pl.PhaseLockService(target)
    for bad in ("", "a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError):
            svc.run_phases([pl.Phase(bad, lambda: None)])


@pytest.mark.parametrize("use_xattrs", [True, False])
def test_run_then_skip(pl, target, use_xattrs):
    if use_xattrs and not xattrs_work(target.parent):
        pytest.skip("no user xattrs here")
    ran = []
    svc = pl.PhaseLockService(target, use_xattrs=use_xattrs)
    phases = [pl.Phase("one", lambda: ran.append("one")), pl.Phase("two", lambda: ran.append("two"))]
    r = svc.run_phases(phases)
    assert r.completed == ("one", "two") and r.skipped == ()
    assert r.lock_path == Path(str(target) + ".lock")
    assert ran == ["one", "two"]
    r = pl.PhaseLockService(target, use_xattrs=use_xattrs).run_phases(phases)
    assert r.completed == () and r.skipped == ("one", "two")
    assert ran == ["one", "two"]
    assert svc.has_phase("one") and svc.has_phase("two") and not svc.has_phase("three")
    if use_xattrs:
        assert os.getxattr(target, "user.phaselock.one") == b"1"
        assert r.status_paths == ()
    else:
        assert (Path(str(target) + ".status")).read_text() == "one\ntwo\n"
        assert r.status_paths == (Path(str(target) + ".status"),)
        assert r.xattrs_available is False
    assert os.path.exists(str(target) + ".lock"), "the lock file is never deleted"


def test_resume_after_failure(pl, target):
    ran = []

    def boom():
        ran.append("two")
        raise RuntimeError("boom")

    svc = pl.PhaseLockService(target, use_xattrs=False)
    with pytest.raises(RuntimeError, match="boom"):
        svc.run_phases([pl.Phase("one", lambda: ran.append("one")), pl.Phase("two", boom)])
    r = svc.run_phases([pl.Phase("one", lambda: ran.append("one")), pl.Phase("two", lambda: ran.append("two!"))])
    assert r.skipped == ("one",) and r.completed == ("two",)
    assert ran == ["one", "two", "two!"]


def test_attr_names_and_values(pl, target):
    if not xattrs_work(target.parent):
        pytest.skip("no user xattrs here")
    svc = pl.PhaseLockService(target, namespace="user.myapp")
    assert svc.attr_key("schema") == "user.myapp.schema"
    assert svc.attr_key("schema", "schema-v2") == "user.myapp.schema-v2"
    svc.run_phases([pl.Phase("schema", lambda: None, attr_name="schema-v2", attr_value=b"42")])
    assert svc.get_xattr_value("schema", attr_name="schema-v2") == b"42"
    assert svc.has_phase("schema", attr_name="schema-v2")
    assert svc.mark_phase("other", value=b"7") is True
    assert svc.get_xattr_value("other") == b"7"
    assert svc.get_xattr_value("absent") is None


def test_discard_and_completion_is_valid(pl, target):
    svc = pl.PhaseLockService(target, use_xattrs=False)
    ran = []
    ph = [pl.Phase("p", lambda: ran.append(1))]
    svc.run_phases(ph)
    assert os.path.exists(str(target) + ".status")
    svc.discard_status_markers()
    assert not os.path.exists(str(target) + ".status")
    svc.run_phases(ph)
    assert ran == [1, 1]
    seen = []

    def valid(locked):
        seen.append(locked)
        return False

    r = svc.run_phases(ph, completion_is_valid=valid)
    assert r.completed == ("p",) and ran == [1, 1, 1]
    assert seen[0] is False and seen[-1] is True, seen
    r = svc.run_phases(ph, discard_status_if=lambda: True)
    assert r.completed == ("p",) and ran == [1, 1, 1, 1]


def test_locked_and_timeout(pl, target, children):
    lock_path = str(target) + ".lock"
    holder = children.python(
        "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()\n", lock_path)
    holder.expect("held")
    svc = pl.PhaseLockService(target, timeout=0.2, retry_delay=0.01)
    with pytest.raises(pl.PhaseLockTimeout) as info:
        with svc.locked():
            pass
    assert info.value.cause is None
    assert lock_path in str(info.value)
    with pytest.raises(pl.PhaseLockTimeout):
        svc.run_phases([pl.Phase("x", lambda: None)])
    cancel = pl.PhaseLockService(target, timeout=30, retry_delay=0.01)
    with pytest.raises(pl.PhaseLockCancelled):
        cancel.run_phases([pl.Phase("x", lambda: None)], should_cancel=lambda: True)
    holder.send("go")
    holder.wait()
    with svc.locked():
        pass


def test_advisory_file_lock(pl, tmp_path):
    path = tmp_path / "cache.lock"
    lock = pl.AdvisoryFileLock(path, timeout=1.0, retry_delay=0.01)
    assert not lock.locked
    with lock:
        assert lock.locked
        with pytest.raises(RuntimeError):
            lock.acquire()
        other = pl.AdvisoryFileLock(path, timeout=0.1, retry_delay=0.01)
        got = []
        t = threading.Thread(target=lambda: got.append(_try(other, pl)))
        t.start()
        t.join(10)
        assert got == ["timeout"], "another thread waits for the lock"
    assert not lock.locked
    assert lock.acquire() is True
    lock.release()
    assert os.path.getsize(path) == 1, "phaselock keeps one NUL byte in the lock file"
    nested = pl.AdvisoryFileLock(tmp_path / "sub" / "dir" / "x.lock", timeout=1.0, retry_delay=0.01)
    with nested:
        assert nested.locked


def _try(lock, pl):
    try:
        lock.acquire()
    except pl.PhaseLockTimeout:
        return "timeout"
    lock.release()
    return "acquired"


def test_stop_waiting(pl, tmp_path, children):
    path = tmp_path / "w.lock"
    holder = children.python(
        "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()\n", str(path))
    holder.expect("held")
    calls = []
    lock = pl.AdvisoryFileLock(path, timeout=30.0, retry_delay=0.01)

    def stop():
        calls.append(1)
        return len(calls) >= 3

    assert lock.acquire(should_stop_waiting=stop) is False
    assert not lock.locked


def test_threads_run_each_phase_once(pl, target):
    count = []
    gate = threading.Barrier(4)

    def run():
        gate.wait(10)
        pl.PhaseLockService(target, use_xattrs=False, timeout=20).run_phases(
            [pl.Phase("init", lambda: count.append(1))])

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert count == [1]


# --- documented bugs of the original -----------------------------------------------------------

def test_missing_target_phase_does_not_rerun_forever(pl, tmp_path, request):
    """phaselock: target missing on an xattr-capable filesystem -> setxattr
    fails, the marker goes to .status, xattr mode never reads .status."""
    if not xattrs_work(tmp_path):
        pytest.skip("no user xattrs here")
    original_bug(request, "a phase whose xattr cannot be written reruns on every call")
    target = tmp_path / "not-yet.db"
    ran = []
    for _ in range(3):
        pl.PhaseLockService(target).run_phases([pl.Phase("p", lambda: ran.append(1))])
    assert ran == [1]


def test_one_bad_status_line_keeps_the_others(pl, target, request):
    """phaselock: any invalid line in the status file discards every marker."""
    original_bug(request, "one malformed status line makes every phase rerun")
    status = Path(str(target) + ".status")
    status.write_bytes(b"one\n\xff\xfe\n")
    ran = []
    pl.PhaseLockService(target, use_xattrs=False).run_phases([pl.Phase("one", lambda: ran.append(1))])
    assert ran == []


def test_mixed_modes_share_markers(pl, target, request, monkeypatch):
    """phaselock: a process with PHASELOCK_ENABLE_XATTRS=0 and one without do not see each other's markers."""
    if not xattrs_work(target.parent):
        pytest.skip("no user xattrs here")
    original_bug(request, "status-mode markers are invisible to an xattr-mode process")
    ran = []
    pl.PhaseLockService(target, use_xattrs=False).run_phases([pl.Phase("p", lambda: ran.append(1))])
    pl.PhaseLockService(target).run_phases([pl.Phase("p", lambda: ran.append(2))])
    assert ran == [1]


# --- interop with the real phaselock -----------------------------------------------------------

MARK = """
import sys
from pathlib import Path
mod = __import__(sys.argv[1], fromlist=["x"])
use = None if sys.argv[3] == "auto" else sys.argv[3] == "xattr"
r = mod.PhaseLockService(Path(sys.argv[2]), use_xattrs=use).run_phases(
    [mod.Phase(n, lambda n=n: print("ran", n, flush=True)) for n in sys.argv[4:]])
print("completed", ",".join(r.completed), "skipped", ",".join(r.skipped), flush=True)
"""


@pytest.mark.parametrize("mode", ["xattr", "status"])
@pytest.mark.parametrize("first", ["original", "compat"])
def test_interop_markers_both_ways(mode, first, target, children):
    load("phaselock")
    if mode == "xattr" and not xattrs_work(target.parent):
        pytest.skip("no user xattrs here")
    mods = {"original": "phaselock", "compat": "holdfast.compat.phaselock"}
    second = "compat" if first == "original" else "original"
    out1 = children.python(MARK, mods[first], str(target), mode, "a", "b").result()
    assert "completed a,b skipped" in out1, out1
    out2 = children.python(MARK, mods[second], str(target), mode, "a", "b", "c").result()
    assert "completed c skipped a,b" in out2, out2
    out3 = children.python(MARK, mods[first], str(target), mode, "a", "b", "c").result()
    assert "completed  skipped a,b,c" in out3, out3


def test_interop_counter(tmp_path, children):
    load("phaselock")
    counting_run(children, "phaselock", "original", "phaselock", "compat", str(tmp_path / "c.lock"), str(tmp_path),
                 n=25)


@pytest.mark.parametrize("holder_impl", ["original", "compat"])
def test_interop_holder_seen_and_sigkill(holder_impl, tmp_path, children):
    load("phaselock")
    other = "compat" if holder_impl == "original" else "original"
    path = str(tmp_path / "h.lock")
    h = children.worker("phaselock", holder_impl, "hold", path)
    h.expect("held")
    assert "busy" in children.worker("phaselock", other, "try", path, "0.3").result()
    h.kill()
    assert "got" in children.worker("phaselock", other, "try", path, "10").result()
