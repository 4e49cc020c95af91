"""lockfile's ``PIDLockFile`` over holdfast: exactly ``path``, created
``O_CREAT|O_EXCL``, the holder's pid on its first line (see
:mod:`holdfast.compat.lockfile`). The record's further lines (host, start
token: filelock's soft-lock record) let holdfast take over the lock of a
dead holder; lockfile reads only the first line."""

from __future__ import absolute_import

import errno
import os
from typing import Optional

from . import AlreadyLocked, LockBase, LockFailed, LockTimeout, NotLocked, NotMyLock, _HoldfastLock

__all__ = ["PIDLockFile", "read_pid_from_pidfile", "write_pid_to_pidfile", "remove_existing_pidfile",
           "LockBase", "AlreadyLocked", "LockFailed", "NotLocked", "NotMyLock", "LockTimeout"]


class PIDLockFile(_HoldfastLock):
    """Lockfile implemented as a Unix PID file.

    The lock file is a normal file named by the attribute ``path``; it holds
    the pid of the process that acquired the lock.

    >>> lock = PIDLockFile('somefile')
    """

    _protocol = "soft"
    _compat = "filelock"

    def __init__(self, path: str, threaded: bool = False, timeout: Optional[float] = None) -> None:
        _HoldfastLock.__init__(self, path, False, timeout)
        self.unique_name = self.path

    def _on_disk(self) -> str:
        return self.path

    def read_pid(self) -> Optional[int]:
        """The pid recorded in the lock file, or None."""
        return read_pid_from_pidfile(self.path)

    def is_locked(self) -> bool:
        """Whether the PID file exists."""
        return os.path.exists(self.path)

    def i_am_locking(self) -> bool:
        """Whether this process holds the lock (its pid is in the file)."""
        return self.is_locked() and os.getpid() == self.read_pid()

    def acquire(self, timeout: Optional[float] = None) -> None:
        if self._handle is not None and _HoldfastLock.i_am_locking(self):
            return
        _HoldfastLock.acquire(self, timeout)

    def release(self) -> None:
        """Removes the PID file: :class:`NotLocked` if absent,
        :class:`NotMyLock` if another process holds it."""
        if not self.is_locked():
            self._handle = None
            raise NotLocked("%s is not locked" % self.path)
        if not self.i_am_locking():
            raise NotMyLock("%s is locked, but not by me" % self.path)
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.release()
        else:
            remove_existing_pidfile(self.path)


def read_pid_from_pidfile(pidfile_path: str) -> Optional[int]:
    """The pid on the first line of the named PID file, or None if the file
    cannot be read or does not start with a pid."""
    try:
        with open(pidfile_path, "r") as pidfile:
            line = pidfile.readline().strip()
    except (IOError, UnicodeDecodeError):
        return None
    try:
        return int(line)
    except ValueError:
        return None


def write_pid_to_pidfile(pidfile_path: str) -> None:
    """Writes this process's pid to the named file (``O_CREAT|O_EXCL``, 0644)."""
    fd = os.open(pidfile_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w") as pidfile:
        pidfile.write("%s\n" % os.getpid())


def remove_existing_pidfile(pidfile_path: str) -> None:
    """Removes the named PID file if it exists."""
    try:
        os.remove(pidfile_path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
