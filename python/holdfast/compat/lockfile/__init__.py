"""``lockfile`` 0.12.2 over holdfast (lockfile itself is deprecated and
unmaintained; this keeps its API working).

Change ``import lockfile`` to ``from holdfast.compat import lockfile`` (the
submodules ``linklockfile``, ``mkdirlockfile``, ``pidlockfile``,
``symlinklockfile`` and ``sqlitelockfile`` are there too). Same names
(``__all__``), signatures and defaults, the exception tree (``Error`` ->
``LockError`` -> ``LockTimeout``/``AlreadyLocked``/``LockFailed``;
``Error`` -> ``UnlockError`` -> ``NotLocked``/``NotMyLock``), timeout rules
(None: forever; > 0: ``LockTimeout``; <= 0: one try, ``AlreadyLocked``), the
``locked`` decorator and the deprecated factories, and lockfile's on-disk
protocol:

- ``LinkLockFile`` (= ``LockFile`` = ``FileLock``) and ``MkdirLockFile``
  make ``<abspath>.lock`` appear atomically (a hard link; a directory), so
  lockfile processes and this module exclude each other (and Link and Mkdir
  exclude each other, as in lockfile);
- ``PIDLockFile`` creates exactly ``path`` with ``O_CREAT|O_EXCL`` and the
  pid on its first line, as lockfile does (``read_pid()`` works on either's
  files).

What is better than the original (the API is unchanged):

- **No polling**: lockfile sleeps ``timeout/10`` (or 0.1 s) between tries;
  a waiter here wakes when the lock goes away (inotify).
- **Crash recovery**: lockfile never breaks a lock, so a killed holder
  wedges everyone until someone calls ``break_lock()``. A lock taken by
  this module records its holder (pid, process start time, boot id), so a
  waiter takes over the lock of a dead holder at once. (A lock made by
  lockfile itself records nothing and is, as in lockfile, only removed by
  ``break_lock()``.)
- **``break_lock()`` never breaks a live holder it can verify**: lockfile
  removes the lock unconditionally; here a lock whose holder is provably
  alive (a holdfast record of a running process) is left alone. Locks that
  carry no owner (lockfile's own) are removed as lockfile removes them.
- **Release is one step**: lockfile's ``LinkLockFile.release`` is two
  unlinks (a crash between them leaves a lock nobody owns).
- Thread identity is the lock object, not a thread id captured at
  construction and ``hash(path)`` (which differs per interpreter).
- ``SQLiteLockFile`` actually excludes other processes (lockfile's keeps
  its table in a per-process temporary database): here it is a link lock.
- ``SymlinkLockFile`` is a link lock on the same ``<abspath>.lock`` name, so
  it still excludes lockfile's symlink locks.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import warnings
from typing import Any, Callable, Optional

from .. import _core

__version__ = "0.12.2"

__all__ = ["Error", "LockError", "LockTimeout", "AlreadyLocked",
           "LockFailed", "UnlockError", "NotLocked", "NotMyLock",
           "LinkFileLock", "MkdirFileLock", "SQLiteFileLock",
           "LockBase", "locked"]


class Error(Exception):
    """Base class for other exceptions."""


class LockError(Error):
    """Base class for error arising from attempts to acquire the lock."""


class LockTimeout(LockError):
    """Raised when lock creation fails within a user-defined period of time."""


class AlreadyLocked(LockError):
    """Some other thread/process is locking the file."""


class LockFailed(LockError):
    """Lock file creation failed for some other reason."""


class UnlockError(Error):
    """Base class for errors arising from attempts to release the lock."""


class NotLocked(UnlockError):
    """Raised when an attempt is made to unlock an unlocked file."""


class NotMyLock(UnlockError):
    """Raised when an attempt is made to unlock a file someone else locked."""


class _SharedBase(object):
    def __init__(self, path: str) -> None:
        self.path = path

    def acquire(self, timeout: Optional[float] = None) -> None:
        """Acquire the lock: ``timeout`` None waits forever, > 0 that many
        seconds (then :class:`LockTimeout`), <= 0 one try (then
        :class:`AlreadyLocked`)."""
        raise NotImplementedError("implement in subclass")

    def release(self) -> None:
        """Release the lock; :class:`NotLocked` if the file is not locked."""
        raise NotImplementedError("implement in subclass")

    def __enter__(self) -> Any:
        self.acquire()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return "<%s: %r>" % (self.__class__.__name__, self.path)


class LockBase(_SharedBase):
    """Base class for the lock classes: ``LockBase(path, threaded=True, timeout=None)``."""

    def __init__(self, path: str, threaded: bool = True, timeout: Optional[float] = None) -> None:
        super(LockBase, self).__init__(path)
        self.lock_file = os.path.abspath(path) + ".lock"
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        if threaded:
            self.tname = "-%x" % ((threading.current_thread().ident or 0) & 0xffffffff)
        else:
            self.tname = ""
        dirname = os.path.dirname(self.lock_file)
        self.unique_name = os.path.join(dirname, "%s%s.%s%s" % (self.hostname, self.tname, self.pid, hash(self.path)))
        self.timeout = timeout

    def is_locked(self) -> bool:
        """Whether anybody (this object included) holds the lock."""
        raise NotImplementedError("implement in subclass")

    def i_am_locking(self) -> bool:
        """Whether this object holds the lock."""
        raise NotImplementedError("implement in subclass")

    def break_lock(self) -> None:
        """Remove a lock (useful when a holder failed to unlock)."""
        raise NotImplementedError("implement in subclass")

    def __repr__(self) -> str:
        return "<%s: %r -- %r>" % (self.__class__.__name__, self.unique_name, self.path)


class _HoldfastLock(LockBase):
    """A lockfile lock over a holdfast lock file (``_protocol``/``_compat``)."""

    _protocol = "link"
    _compat: Optional[str] = "lockfile"

    def __init__(self, path: str, threaded: bool = True, timeout: Optional[float] = None) -> None:
        LockBase.__init__(self, path, threaded, timeout)
        self._native: Any = None
        self._handle: Any = None

    def _lock(self) -> Any:
        if self._native is None:
            self._native = _core.lock_file(self._native_path(), self._protocol, compat=self._compat, mode=0o644)
        return self._native

    def _native_path(self) -> str:
        return self.path

    def acquire(self, timeout: Optional[float] = None) -> None:
        """Acquire the lock: ``timeout`` None waits forever, > 0 that many
        seconds (then :class:`LockTimeout`), <= 0 one try (then
        :class:`AlreadyLocked`). :class:`LockFailed` if the lock cannot be
        made (e.g. the directory is not writable)."""
        if self.i_am_locking():
            return
        timeout = timeout if timeout is not None else self.timeout
        wait = None if timeout is None else (float(timeout) if timeout > 0 else 0.0)
        deadline = None if wait is None else time.monotonic() + wait
        try:
            while True:
                try:
                    self._handle = _core.acquire(self._lock(), wait, blocking=wait != 0.0)
                    break
                except _core.InvalidInput:
                    # <abspath>.lock is held with the other protocol (a link lock where we make a
                    # directory, or the reverse): lockfile waits for the name to be free; so do we.
                    if not os.path.lexists(self._on_disk()):
                        raise
                    if deadline is not None and time.monotonic() >= deadline:
                        held = "%s is held with the other lockfile protocol" % self._on_disk()
                        if timeout is not None and timeout > 0:
                            raise LockTimeout("Timeout waiting to acquire lock for %s (%s)" % (self.path, held))
                        raise AlreadyLocked("%s is already locked (%s)" % (self.path, held))
                    time.sleep(0.05)
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        except (_core.Busy + (_core.AlreadyHeld,)) as err:
            if timeout is not None and timeout > 0:
                raise LockTimeout("Timeout waiting to acquire lock for %s (%s)" % (self.path, err)) from err
            raise AlreadyLocked("%s is already locked (%s)" % (self.path, err)) from err
        except OSError as err:
            raise LockFailed("failed to create %s: %s" % (self._native_path(), err)) from err

    def release(self) -> None:
        """Release the lock: :class:`NotLocked` if nobody holds it,
        :class:`NotMyLock` if somebody else does."""
        if not self.is_locked():
            self._handle = None
            raise NotLocked("%s is not locked" % self.path)
        if not self.i_am_locking():
            raise NotMyLock("%s is locked, but not by me" % self.path)
        handle, self._handle = self._handle, None
        handle.release()

    def is_locked(self) -> bool:
        """Whether anybody holds the lock (its lock file exists)."""
        return os.path.lexists(self._on_disk())

    def _on_disk(self) -> str:
        return self.lock_file

    def i_am_locking(self) -> bool:
        """Whether this object holds the lock (and it is still its own)."""
        if self._handle is None:
            return False
        try:
            self._handle.check()
        except Exception:
            return False
        return True

    def break_lock(self) -> None:
        """Removes the lock, unless its holder is a live process it can
        verify (lockfile removes even those). A dead holder's lock, and a
        lock that records no owner (lockfile's own), are removed."""
        native = self._lock()
        try:
            st = native.status()
        except OSError:
            st = {}
        holder = st.get("holder") or {}
        if st.get("locked") and st.get("stale") is None and holder.get("source") == "record" and holder.get("pid"):
            return  # a holdfast holder that is alive: never steal it
        if st.get("locked") and st.get("stale") is not None:
            try:
                _core.break_native(native, force=False)  # race-free: only that stale lock
                return
            except TypeError:
                pass
        try:
            _core.break_native(native, force=True)
        except Exception:  # a lock holdfast cannot parse as this protocol's: remove it as lockfile would
            self._remove_unconditionally()

    def _remove_unconditionally(self) -> None:
        path = self._on_disk()
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                for name in os.listdir(path):
                    try:
                        os.unlink(os.path.join(path, name))
                    except FileNotFoundError:
                        pass
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            try:
                handle.release()
            except Exception:
                pass


def _fl_helper(cls: Any, mod: str, *args: Any, **kwds: Any) -> Any:
    warnings.warn("Import from %s module instead of lockfile package" % mod, DeprecationWarning, stacklevel=3)
    if not isinstance(args[0], str):
        args = args[1:]
    if len(args) == 1 and not kwds:
        kwds["threaded"] = True
    return cls(*args, **kwds)


def LinkFileLock(*args: Any, **kwds: Any) -> Any:
    """Factory function provided for backwards compatibility (deprecated):
    use :class:`holdfast.compat.lockfile.linklockfile.LinkLockFile`."""
    from . import linklockfile
    return _fl_helper(linklockfile.LinkLockFile, "lockfile.linklockfile", *args, **kwds)


def MkdirFileLock(*args: Any, **kwds: Any) -> Any:
    """Factory function provided for backwards compatibility (deprecated):
    use :class:`holdfast.compat.lockfile.mkdirlockfile.MkdirLockFile`."""
    from . import mkdirlockfile
    return _fl_helper(mkdirlockfile.MkdirLockFile, "lockfile.mkdirlockfile", *args, **kwds)


def SQLiteFileLock(*args: Any, **kwds: Any) -> Any:
    """Factory function provided for backwards compatibility (deprecated):
    use :class:`holdfast.compat.lockfile.sqlitelockfile.SQLiteLockFile`."""
    from . import sqlitelockfile
    return _fl_helper(sqlitelockfile.SQLiteLockFile, "lockfile.sqlitelockfile", *args, **kwds)


def locked(path: str, timeout: Optional[float] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: run the function while holding ``FileLock(path, timeout=timeout)``."""
    def decor(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            lock = FileLock(path, timeout=timeout)
            lock.acquire()
            try:
                return func(*args, **kwargs)
            finally:
                lock.release()
        return wrapper
    return decor


from . import linklockfile as _llf  # noqa: E402

LockFile = _llf.LinkLockFile
FileLock = LockFile
