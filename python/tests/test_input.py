"""Bad and unusual input: clear exceptions, never a crash."""

from __future__ import annotations

import errno
import math
import os
import pathlib

import pytest

import holdfast


@pytest.mark.parametrize("conv", [str, os.fsencode, pathlib.Path], ids=["str", "bytes", "PathLike"])
def test_path_types(tmp_path, conv):
    p = tmp_path / "x.lock"
    with holdfast.Lock(conv(str(p))) as lock:
        assert lock.path == str(p)
        assert holdfast.status(conv(str(p))).locked


def test_non_utf8_bytes_path(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff.lock"
    with holdfast.Lock(raw) as lock:
        assert os.fsencode(lock.path) == raw
        st = holdfast.status(raw)
        assert st.locked and os.fsencode(st.path) == raw
        with pytest.raises(holdfast.WouldBlock) as e:
            holdfast.Lock(raw).acquire(blocking=False)
        assert os.fsencode(e.value.path) == raw


@pytest.mark.parametrize("bad", [None, 3, 1.5, object(), ["a"]])
def test_path_of_the_wrong_type(bad):
    with pytest.raises(TypeError):
        holdfast.Lock(bad)


@pytest.mark.parametrize("bad", ["", b"", "a\0b"])
def test_empty_or_nul_path(bad):
    with pytest.raises(ValueError):
        holdfast.Lock(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf, 1e300, 10**30])
def test_bad_timeouts_are_value_errors(tmp_path, bad):
    lock = holdfast.Lock(tmp_path / "t.lock")
    with pytest.raises(ValueError):
        lock.acquire(timeout=bad)
    with pytest.raises(ValueError):
        holdfast.Lock(tmp_path / "t.lock", timeout=bad)
    with pytest.raises(ValueError):
        holdfast.Semaphore(tmp_path / "s", 1).acquire(timeout=bad)
    assert not lock.locked


@pytest.mark.parametrize("bad", ["5", b"5", True, [1]])
def test_timeouts_of_the_wrong_type(tmp_path, bad):
    with pytest.raises(TypeError):
        holdfast.Lock(tmp_path / "t.lock").acquire(timeout=bad)


def test_other_bad_arguments(tmp_path):
    p = tmp_path / "b.lock"
    with pytest.raises(ValueError):
        holdfast.Lock(p, backend="posix")
    with pytest.raises(TypeError):
        holdfast.Lock(p, backend=1)
    with pytest.raises(ValueError):
        holdfast.Lock(p, mode=0o77777)
    with pytest.raises(TypeError):
        holdfast.Lock(p, blocking="yes")
    with pytest.raises(ValueError):
        holdfast.LockFile(p, "nfs")
    with pytest.raises(ValueError):
        holdfast.Semaphore(p, 0)
    with pytest.raises(TypeError):
        holdfast.Semaphore(p, 2.0)


def test_missing_directory_is_file_not_found(tmp_path):
    p = tmp_path / "no" / "such" / "x.lock"
    with pytest.raises(FileNotFoundError) as e:
        holdfast.Lock(p)
    assert isinstance(e.value, holdfast.Error) and isinstance(e.value, holdfast.LockIOError)
    assert e.value.errno == errno.ENOENT and e.value.filename == str(p)
    assert str(p) in str(e.value)
    with holdfast.Lock(p, create_parents=True):
        pass


def test_directory_locks_like_flock1(tmp_path):
    with holdfast.Lock(tmp_path) as lock:
        assert lock.token is None  # a directory carries no record
        with pytest.raises(holdfast.WouldBlock):
            holdfast.Lock(tmp_path).acquire(blocking=False)


def test_symlink_is_refused_unless_allowed(tmp_path):
    target = tmp_path / "real.lock"
    target.write_text("")
    link = tmp_path / "link.lock"
    link.symlink_to(target)
    with pytest.raises(holdfast.SymlinkError) as e:
        holdfast.Lock(link)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ELOOP
    assert "symbolic link" in str(e.value)
    with holdfast.Lock(link, follow_symlinks=True):
        with pytest.raises(holdfast.WouldBlock):
            holdfast.Lock(target).acquire(blocking=False)


def test_permission_denied_is_permission_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root is never denied")
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        holdfast.Lock(d / "x.lock")


def test_releasing_what_is_not_held(tmp_path):
    lock = holdfast.Lock(tmp_path / "n.lock")
    with pytest.raises(RuntimeError):
        lock.release()
