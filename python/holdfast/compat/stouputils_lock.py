"""stouputils' ``LockFifo`` / ``RLockFifo`` (``stouputils.lock``, 26.x) over
holdfast.

Change ``from stouputils.lock import LockFifo`` (or ``stouputils.LockFifo``)
to ``from holdfast.compat.stouputils_lock import LockFifo``. Same
signatures and defaults (``timeout=None``, ``blocking=True``,
``check_interval=0.05``, ``fifo=True``, ``fifo_stale_timeout=None``),
attributes (``path``, ``is_locked``, ``fd``, ``fifo``, ``queue_dir``, ...),
exceptions (``LockError(RuntimeError)``, ``LockTimeoutError(TimeoutError,
LockError)``), bare names placed in the temporary directory
(:func:`resolve_path`), context managers, ``close()`` removing the lock's
files when nobody uses them, and the per-(process, thread) re-entrancy of
``RLockFifo``.

On disk the lock is ``flock(2)`` on exactly ``path``, as stouputils', so a
stouputils process and this module exclude each other. Arrival order is
kept by holdfast's own queue (``<path>.fifo``) among the processes that use
this module; stouputils' ticket directory (``<path>.queue/``) is not
joined, so between the two kinds of processes exclusion holds but arrival
order is not promised.

What is better than the original (the API is unchanged):

- **Waiting happens in the kernel**, in arrival order, instead of polling
  every ``check_interval`` for the head ticket and then for the flock.
- **A killed holder or waiter never wedges the queue**: stouputils leaves a
  SIGKILLed holder's ticket at the head, and with the default
  ``timeout=None`` every later ``LockFifo`` waits forever. holdfast's queue
  entries are kernel locks, released by the kernel when their process dies.
- **``close()`` does not split the lock**: stouputils probes the lock,
  closes the probe, then unlinks the path, so a process that opened the
  file in between holds a lock on a file no one else can find. Here the
  path is removed only while holding the lock, only when no holdfast
  waiter is queued and no stouputils queue (``<path>.queue/``) exists, and
  holdfast re-checks the path after every acquisition. (A stouputils
  process can still split the lock by its own ``close()``; no peer can
  prevent that.)
- ``timeout`` bounds the whole wait (stouputils' queue wait plus flock wait
  can take twice ``timeout``).

Not reproduced: ``RedisLockFifo`` and the ticket-queue classes
(``BaseTicketQueue``, ``FileTicketQueue``, ``RedisTicketQueue``).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import suppress
from typing import Any, ClassVar, Dict, Optional, Tuple

from . import _core
from .. import _native

__all__ = [
    "LockFifo",
    "RLockFifo",
    "LockError",
    "LockTimeoutError",
    "resolve_acquire_defaults",
    "resolve_path",
    "wait_or_raise",
]


class LockError(RuntimeError):
    """Base lock error."""


class LockTimeoutError(TimeoutError, LockError):
    """Raised when a lock could not be acquired within ``timeout`` seconds."""


def resolve_path(path: str) -> str:
    """The lock file's path: ``~`` expanded, normalised, ``\\`` turned into
    ``/``; a bare file name goes into the system temporary directory; the
    parent directories are created."""
    p = os.path.normpath(os.path.expanduser(str(path))).replace("\\", "/")
    if os.path.basename(p) == p:
        p = f"{tempfile.gettempdir()}/{p}"
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    return p


def resolve_acquire_defaults(blocking_arg: Optional[bool], timeout_arg: Optional[float],
                             check_interval_arg: Optional[float], default_blocking: bool,
                             default_timeout: Optional[float],
                             default_check_interval: float) -> Tuple[bool, Optional[float], float, Optional[float]]:
    """(blocking, timeout, check_interval, deadline) from acquire()'s arguments and the lock's defaults."""
    blocking = default_blocking if blocking_arg is None else blocking_arg
    timeout = default_timeout if timeout_arg is None else timeout_arg
    check_interval = default_check_interval if check_interval_arg is None else check_interval_arg
    deadline = None if timeout is None else time.monotonic() + timeout
    return blocking, timeout, check_interval, deadline


def wait_or_raise(blocking: bool, deadline: Optional[float], check_interval: float, name: str) -> None:
    """Sleeps one ``check_interval``, or raises :class:`LockTimeoutError` when
    waiting is not allowed (``blocking`` False) or ``deadline`` has passed."""
    if not blocking:
        raise LockTimeoutError("Lock is already held and blocking is False")
    if deadline is not None and time.monotonic() >= deadline:
        raise LockTimeoutError(f"Timeout while waiting for lock '{name}'")
    time.sleep(check_interval)


class LockFifo:
    """A cross-process lock backed by a file, served in arrival order
    (``fifo=True``, the default)."""

    def __init__(self, name: str, timeout: Optional[float] = None, blocking: bool = True,
                 check_interval: float = 0.05, fifo: bool = True,
                 fifo_stale_timeout: Optional[float] = None) -> None:
        self.path: str = resolve_path(name)
        self.timeout = timeout
        self.blocking = blocking
        self.check_interval = check_interval
        self.file: Any = None
        self.fd: Optional[int] = None
        self.is_locked: bool = False
        self.member: Optional[str] = None
        self.fifo = fifo
        self.fifo_stale_timeout = fifo_stale_timeout
        self.queue_dir: str = f"{self.path}.fifo"
        self.queue: Any = None
        self._native: Any = None
        self._handle: Any = None

    def _lock(self) -> Any:
        if self._native is None:
            if self.fifo:
                self._native = _native.NativeFifoLock(
                    os.fsencode(self.path), backend="flock", record=True, create_parents=True,
                    follow_symlinks=False, mode=0o666, queue_path=None, remove_queue_when_idle=True)
            else:
                self._native = _core.kernel_lock(self.path, mode=0o666, create_parents=True)
        return self._native

    def get_ticket(self) -> int:
        """The ticket this lock holds in the queue (0 when it holds none)."""
        h = self._handle
        return int(getattr(h, "ticket", 0) or 0) if h is not None else 0

    def perform_lock(self, blocking: bool, timeout: Optional[float], check_interval: float) -> None:
        """Takes the lock (queueing when ``fifo``), waiting in the kernel at
        most ``timeout`` seconds. :class:`LockTimeoutError` when it cannot."""
        native = self._lock()
        wait = 0.0 if not blocking else (None if timeout is None else max(0.0, float(timeout)))
        try:
            if isinstance(native, _native.NativeFifoLock):
                self._handle = native.acquire(False, wait, blocking and wait != 0.0)
            else:
                self._handle = _core.acquire(native, wait, blocking)
        except (_core.Busy + (_core.AlreadyHeld,)) as err:
            if not blocking:
                raise LockTimeoutError("Lock is already held and blocking is False") from err
            raise LockTimeoutError(f"Timeout while waiting for lock '{self.path}'") from err
        except OSError as err:
            raise LockError(str(err)) from err
        self.is_locked = True
        with suppress(Exception):
            self.fd = int(self._handle.fileno())

    def acquire(self, timeout: Optional[float] = None, blocking: Optional[bool] = None,
                check_interval: Optional[float] = None) -> None:
        """Acquires the lock in arrival order (``fifo``). :class:`LockTimeoutError`
        after ``timeout`` seconds, or at once when not ``blocking``."""
        blocking, timeout, check_interval, _ = resolve_acquire_defaults(
            blocking, timeout, check_interval, self.blocking, self.timeout, self.check_interval)
        self.perform_lock(blocking, timeout, check_interval)

    def release(self) -> None:
        """Releases the lock (no-op when not held)."""
        if not self.is_locked:
            return
        handle, self._handle = self._handle, None
        self.is_locked = False
        self.fd = None
        if handle is not None:
            with suppress(Exception):
                handle.release()

    def __enter__(self) -> "LockFifo":
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        self.release()

    def close(self) -> None:
        """Releases, and removes the lock file and queue when nobody uses
        them: the path is unlinked only while this process holds the lock."""
        with suppress(Exception):
            self.release()
        self._native = None  # an idle queue file goes with the last FifoLock object
        with suppress(Exception):
            probe = _core.kernel_lock(self.path, mode=0o666, record=False)
            handle = _core.acquire(probe, 0.0, blocking=False)
            try:
                st = os.stat(self.path)
                if os.fstat(int(handle.fileno())).st_ino == st.st_ino:
                    # Not while holdfast waiters queue (<path>.fifo), nor while stouputils
                    # processes are about (their <path>.queue/): those do not re-check the path
                    # after locking and could lock the removed file.
                    if not os.path.exists(self.path + ".fifo") and not os.path.exists(self.path + ".queue"):
                        os.unlink(self.path)
            finally:
                handle.release()

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<LockFifo path={self.path!r} locked={self.is_locked}>"


class RLockFifo(LockFifo):
    """A :class:`LockFifo` re-entrant per (path, process, thread)."""

    owners: ClassVar[Dict[Tuple[str, int, int], int]] = {}
    _owners_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, timeout: Optional[float] = None, blocking: bool = True,
                 check_interval: float = 0.05, fifo: bool = True,
                 fifo_stale_timeout: Optional[float] = None) -> None:
        super().__init__(name, timeout=timeout, blocking=blocking, check_interval=check_interval, fifo=fifo,
                         fifo_stale_timeout=fifo_stale_timeout)
        self.key: Tuple[str, int, int] = (self.path, os.getpid(), threading.get_ident())

    def acquire(self, timeout: Optional[float] = None, blocking: Optional[bool] = None,
                check_interval: Optional[float] = None) -> None:
        """Acquires, or counts one more level if this thread already holds it."""
        key = (self.path, os.getpid(), threading.get_ident())
        with self._owners_lock:
            if self.owners.get(key, 0) > 0:
                self.owners[key] += 1
                return
        super().acquire(timeout=timeout, blocking=blocking, check_interval=check_interval)
        with self._owners_lock:
            self.owners[key] = 1
        self.key = key

    def release(self) -> None:
        """Releases one level; the lock at the last."""
        key = (self.path, os.getpid(), threading.get_ident())
        with self._owners_lock:
            cnt = self.owners.get(key, 0)
            if cnt > 1:
                self.owners[key] = cnt - 1
                return
            self.owners.pop(key, None)
        super().release()
