"""``flufl.lock`` (8-10) over holdfast: NFS-safe ``link()`` lock files with
lifetimes.

Change ``from flufl.lock import Lock`` to ``from holdfast.compat.flufl_lock
import Lock``. Same names (``__all__``), signatures, defaults (lifetime
15 s), ``LockState``, the exception tree (``LockError`` ->
``AlreadyLockedError``, ``NotLockedError``, ``TimeOutError``), ``SEP``,
properties (``details``, ``state``, ``expiration``, ``lifetime``,
``lockfile``, ``claimfile``, ``hostname``, ``retry_errnos``) and flufl.lock
10.0.0's on-disk protocol: a claim file ``<lockfile>|<fqdn>|<pid>|<token>``
whose content is its own name, hard-linked to the lock file, its mtime set
to the expiry time; a lock past ``expiry + 10 s`` is broken. flufl.lock
processes and this module exclude each other and read each other's claims
(``details``, ``state``).

What is better than the original (the API is unchanged):

- **A live holder's lock is not stolen.** flufl.lock's lifetime is a promise
  the holder must keep by calling ``refresh()``; a holder that works longer
  loses its lock to the next waiter while still writing. Here the lock's
  lease is renewed in the background while this process holds it, so only a
  dead or unreachable holder (lease not renewed for ``lifetime + 10 s``)
  loses it. ``refresh()`` still works and still extends the lease.
- **No random sleeps**: flufl.lock retries every 0.01-2.01 s (mean ~1 s
  latency). A waiter here watches the directory (inotify) and wakes when the
  lock file goes away.
- **Breaking is race-free**: of several waiters that find an expired lock,
  exactly one takes it, and none can delete a newer lock (flufl.lock's
  breaker may unlink a fresh winner's link).
- A dead holder that was a holdfast process on this host (its claim
  records its start time and boot) is taken over at once, without waiting
  out its lifetime; a flufl.lock claim (no start time, and a host name that
  is often just ``localhost``) is broken the way flufl.lock breaks it, once
  its lease plus 10 s has passed.
- ``timeout`` and ``lifetime`` also accept floats (flufl.lock raises
  ``TypeError`` on a float timeout).

Not reproduced: a ``separator`` other than ``SEP`` (holdfast's claims use
flufl.lock's default ``|``).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import sys
import time
from datetime import datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any, List, Literal, Optional, Tuple, Type, Union

from . import _core

__version__ = "10.0.0"

Interval = Union[timedelta, int, float]

DEFAULT_LOCK_LIFETIME = timedelta(seconds=15)
CLOCK_SLOP = timedelta(seconds=10)
MAXINT = sys.maxsize
SEP = "^" if sys.platform == "win32" else "|"
ERRORS = (errno.ENOENT, errno.ESTALE)

log = logging.getLogger("flufl.lock")
log.addHandler(logging.NullHandler())

__all__ = [
    "SEP",
    "AlreadyLockedError",
    "Lock",
    "LockError",
    "LockState",
    "NotLockedError",
    "TimeOutError",
]


class LockError(Exception):
    """Base class for all exceptions in this module."""


class AlreadyLockedError(LockError):
    """An attempt is made to lock an already locked object."""


class NotLockedError(LockError):
    """An attempt is made to unlock an object that isn't locked."""


class TimeOutError(LockError):
    """The timeout interval elapsed before the lock succeeded."""


class LockState(Enum):
    """Infer the state of the lock."""

    unlocked = 1
    ours = 2
    ours_expired = 3
    stale = 4
    theirs_expired = 5
    unknown = 6


def _seconds(interval: Interval, what: str) -> float:
    if isinstance(interval, timedelta):
        return interval.total_seconds()
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {type(interval).__name__}")
    return float(interval)


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """Portable, NFS-safe file locking with lifetimes (flufl.lock's API).

    :param lockfile: the path of the lock file.
    :param lifetime: the expected maximum lifetime of the lock, a timedelta
        or seconds (default 15 s). Other processes break the lock once it
        has not been renewed for this long plus 10 s; this process renews it
        while it holds it.
    :param separator: must be :data:`SEP`.
    :param default_timeout: default for :meth:`lock`'s ``timeout``.
    """

    def __init__(self, lockfile: str, lifetime: Optional[Interval] = None, separator: str = SEP,
                 default_timeout: Optional[Interval] = None) -> None:
        if separator != SEP:
            raise ValueError(f"holdfast.compat.flufl_lock writes flufl.lock's default claim separator {SEP!r} "
                             f"only (got {separator!r})")
        self._hostname = socket.getfqdn()
        self._default_timeout = default_timeout
        self._lockfile = os.fspath(lockfile)
        self._separator = separator
        self.lifetime = DEFAULT_LOCK_LIFETIME if lifetime is None else lifetime
        self._claimfile = SEP.join((self._lockfile, self._hostname, str(os.getpid()), str(random.randint(0, MAXINT))))
        self._retry_errnos: List[int] = []
        self._native: Any = None
        self._handle: Any = None

    def __repr__(self) -> str:
        return "<{} {} [{}: {}] pid={} at {:#x}>".format(
            self.__class__.__name__, self._lockfile,
            "locked" if self._is_locked_no_refresh() else "unlocked",
            self._lifetime, os.getpid(), id(self))

    # --- properties --------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        """This machine's host name, as used in :attr:`details`."""
        return self._hostname

    @property
    def lockfile(self) -> str:
        """The lock file name."""
        return self._lockfile

    @property
    def claimfile(self) -> str:
        """The claim file name (the one linked to the lock file while held)."""
        return self._claimfile

    @property
    def lifetime(self) -> timedelta:
        """The current lock lifetime."""
        return self._lifetime

    @lifetime.setter
    def lifetime(self, lifetime: Interval) -> None:
        seconds = _seconds(lifetime, "lifetime")
        if seconds <= 0:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        self._lifetime = lifetime if isinstance(lifetime, timedelta) else timedelta(seconds=seconds)

    @property
    def retry_errnos(self) -> List[int]:
        """The errno values that cause a read retry."""
        return self._retry_errnos[:]

    @retry_errnos.setter
    def retry_errnos(self, errnos: List[int]) -> None:
        self._retry_errnos = list(errnos)

    @retry_errnos.deleter
    def retry_errnos(self) -> None:
        self._retry_errnos = []

    def _read(self) -> Optional[str]:
        while True:
            try:
                with open(self._lockfile) as fp:
                    return fp.read()
            except OSError as error:
                if error.errno in self._retry_errnos:
                    time.sleep(0.01)
                elif error.errno not in ERRORS:
                    raise
                else:
                    return None

    @property
    def details(self) -> Tuple[str, int, str]:
        """(hostname, pid, lock file name) read from the lock file.

        :raises NotLockedError: if the lock is not held by anyone."""
        try:
            with open(self._lockfile) as fp:
                filename = fp.read().strip()
        except OSError as error:
            if error.errno in ERRORS:
                raise NotLockedError("Details are unavailable") from error
            raise
        try:
            lockfile, hostname, pid, _random = filename.split(self._separator)
            return hostname, int(pid), lockfile
        except ValueError as error:
            raise NotLockedError("Details are unavailable") from error

    @property
    def expiration(self) -> datetime:
        """The lock's expiration time (the lock file's mtime), regardless of ownership."""
        return datetime.fromtimestamp(os.stat(self._lockfile).st_mtime)

    @property
    def state(self) -> LockState:
        """What can be inferred about the lock (flufl.lock's rules)."""
        try:
            with open(self._lockfile) as fp:
                filename = fp.read().strip()
        except FileNotFoundError:
            return LockState.unlocked
        try:
            _lockfile, hostname, pid_str, _random = filename.split(self._separator)
            pid = int(pid_str)
        except (ValueError, TypeError):
            return LockState.unknown
        if hostname != self._hostname:
            return LockState.unknown
        try:
            expired = self.expiration < self._now()
        except FileNotFoundError:
            return LockState.unlocked
        if pid == os.getpid():
            return LockState.ours_expired if expired else LockState.ours
        if _pid_exists(pid):
            return LockState.theirs_expired if expired else LockState.unknown
        return LockState.stale

    # --- locking -----------------------------------------------------------------------------
    def _is_locked_no_refresh(self) -> bool:
        if self._handle is None:
            return False
        try:
            self._handle.check()
        except Exception:
            return False
        return True

    @property
    def is_locked(self) -> bool:
        """True if this object holds the lock. As in flufl.lock, asking
        renews the lease."""
        if not self._is_locked_no_refresh():
            return False
        try:
            self._touch()
        except PermissionError:
            return False
        return True

    def _touch(self) -> None:
        t = time.mktime((self._now() + self._lifetime).timetuple())
        try:
            os.utime(self._claimfile, (t, t))
        except OSError as error:
            if error.errno not in ERRORS:
                raise

    def lock(self, timeout: Optional[Interval] = None) -> None:
        """Acquires the lock, waiting at most ``timeout`` (timedelta or
        seconds; None: the default timeout, else forever).

        :raises AlreadyLockedError: if this object already holds the lock.
        :raises TimeOutError: if the time ran out."""
        if self._is_locked_no_refresh():
            raise AlreadyLockedError("We already had the lock")
        t = self._default_timeout if timeout is None else timeout
        wait = None if t is None else max(0.0, _seconds(t, "timeout"))
        life = self._lifetime.total_seconds()
        if self._native is None or self._native.lifetime != life:
            self._native = _core.lock_file(self._lockfile, "link", compat="flufl", lifetime=life, heartbeat=True,
                                           mode=0o666)
        try:
            self._handle = _core.acquire(self._native, wait)
        except _core.Busy as err:
            raise TimeOutError("Could not acquire the lock") from err
        except _core.AlreadyHeld as err:
            raise TimeOutError(f"Could not acquire the lock: {err}") from err
        claim = self._read()
        if claim:
            self._claimfile = claim.strip()

    def refresh(self, lifetime: Optional[Interval] = None, *, unconditionally: bool = False) -> None:
        """Extends the lease to ``lifetime`` (default: the lock's lifetime) from now.

        :raises NotLockedError: if the lock is not held, unless ``unconditionally``."""
        if lifetime is not None:
            self.lifetime = lifetime
        if not self.is_locked and not unconditionally:
            raise NotLockedError(f"{self!r}: {self._read()}")

    def unlock(self, *, unconditionally: bool = False) -> None:
        """Releases the lock (removes the lock file, then the claim).

        :raises NotLockedError: if this object does not hold the lock (never
            took it, already released, or it was broken), unless
            ``unconditionally``."""
        locked = self._is_locked_no_refresh()
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.release()
            except Exception as err:
                if locked and not unconditionally:
                    raise NotLockedError(f"{self._lockfile}: {err}") from err
        if not locked and not unconditionally:
            raise NotLockedError("Already unlocked")

    def __enter__(self) -> "Lock":
        self.lock()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc_val: Optional[BaseException],
                 exc_tb: Optional[TracebackType]) -> Literal[False]:
        self.unlock()
        return False

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            try:
                handle.release()
            except Exception:
                pass

    def _now(self) -> datetime:
        """The current time (a hook subclasses may override, as in flufl.lock)."""
        return datetime.now()

    def _sleep(self) -> None:
        """Kept for subclasses of flufl.lock's Lock; holdfast does not sleep-poll."""
        time.sleep(random.random() * 2.0 + 0.01)
