"""libvcs's ``file_lock`` module (``libvcs._internal.file_lock``, on its
``pr/file-lock`` branches) over holdfast.

Change ``from libvcs._internal.file_lock import FileLock`` to ``from
holdfast.compat.libvcs_file_lock import FileLock``. Same names
(``__all__``), signatures and defaults (``timeout=-1.0``,
``poll_interval=0.05``, ``stale_timeout=300.0``, ``mode=0o644``),
exceptions (``FileLockError``; ``FileLockTimeout(lock_file, timeout)``, also
a ``TimeoutError``, picklable; ``FileLockStale``), reentrancy
(``lock_counter``, ``release(force=...)``), the async lock and
``atomic_init`` / ``async_atomic_init`` with the same lock and marker names
(``<parent>/.<name>.lock``, ``<path>/.initialized``). On disk the lock is
created ``O_CREAT|O_EXCL`` at exactly ``lock_file`` and removed on release,
as libvcs does, so libvcs processes and this module exclude each other.

What is better than the original (the API is unchanged):

- **No lost updates from stale-lock breaking.** libvcs deletes any lock
  whose mtime is older than ``stale_timeout``, so a holder working longer
  than 5 minutes loses its lock while still writing, and two waiters that
  both find a stale lock can delete each other's fresh locks; its
  ``release()`` deletes the path even when the lock there is no longer its
  own. Here the holder keeps its lock file's mtime fresh while it holds it
  (libvcs waiters therefore never break a live holdfast holder), a stale
  lock is broken by exactly one waiter and never a newer one, and release
  removes only this holder's own lock.
- **A dead holder is recovered at once** when it was a holdfast process on
  this host (its record names pid, start time and boot); a lock made by
  libvcs itself (which records only a pid) is broken once its mtime is
  ``stale_timeout`` old, as libvcs does.
- **No polling**: waiters sleep on inotify and wake when the lock goes;
  ``poll_interval`` is accepted. The async lock waits without blocking the
  event loop (libvcs makes blocking system calls on the loop).
- ``FileLockTimeout`` chains holdfast's error, which names the holder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import pathlib
import shutil
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Optional, Tuple, Union

from . import _core

__all__ = [
    "AcquireReturnProxy",
    "AsyncAcquireReturnProxy",
    "AsyncFileLock",
    "FileLock",
    "FileLockContext",
    "FileLockError",
    "FileLockStale",
    "FileLockTimeout",
    "async_atomic_init",
    "atomic_init",
]


class FileLockError(Exception):
    """Base exception for file lock errors."""


class FileLockTimeout(FileLockError, TimeoutError):
    """Lock acquisition timed out: ``FileLockTimeout(lock_file, timeout)``."""

    def __init__(self, lock_file: str, timeout: float) -> None:
        self.lock_file = lock_file
        self.timeout = timeout
        super().__init__(f"Timeout ({timeout}s) waiting for lock: {lock_file}")

    def __reduce__(self) -> Tuple[Any, Tuple[str, float]]:
        return self.__class__, (self.lock_file, self.timeout)


class FileLockStale(FileLockError):
    """A stale lock was detected: ``FileLockStale(lock_file, age_seconds)``."""

    def __init__(self, lock_file: str, age_seconds: float) -> None:
        self.lock_file = lock_file
        self.age_seconds = age_seconds
        super().__init__(f"Stale lock ({age_seconds}s old): {lock_file}")

    def __reduce__(self) -> Tuple[Any, Tuple[str, float]]:
        return self.__class__, (self.lock_file, self.age_seconds)


@dataclasses.dataclass
class FileLockContext:
    """A lock's settings and state (``lock_file_fd`` is the held lock's
    handle here, not a raw descriptor; ``is_locked`` as in libvcs)."""

    lock_file: str
    timeout: float = -1.0
    poll_interval: float = 0.05
    stale_timeout: float = 300.0
    mode: int = 0o644
    lock_file_fd: Any = dataclasses.field(default=None, repr=False)
    lock_counter: int = 0

    @property
    def is_locked(self) -> bool:
        return self.lock_file_fd is not None


class AcquireReturnProxy:
    """Returned by :meth:`FileLock.acquire`; releases on leaving ``with``."""

    def __init__(self, lock: "FileLock") -> None:
        self._lock = lock

    def __enter__(self) -> "FileLock":
        return self._lock

    def __exit__(self, exc_type: Optional[type], exc_val: Optional[BaseException],
                 exc_tb: Optional[TracebackType]) -> None:
        self._lock.release()


class AsyncAcquireReturnProxy:
    """Returned by :meth:`AsyncFileLock.acquire`; releases on leaving ``async with``."""

    def __init__(self, lock: "AsyncFileLock") -> None:
        self._lock = lock

    async def __aenter__(self) -> "AsyncFileLock":
        return self._lock

    async def __aexit__(self, exc_type: Optional[type], exc_val: Optional[BaseException],
                        exc_tb: Optional[TracebackType]) -> None:
        await self._lock.release()


class FileLock(contextlib.ContextDecorator):
    """An ``O_CREAT|O_EXCL`` lock file at ``lock_file`` (libvcs's API),
    reentrant per instance. ``timeout`` -1 waits forever, 0 tries once."""

    def __init__(self, lock_file: Union[str, "os.PathLike[str]"], timeout: float = -1.0,
                 poll_interval: float = 0.05, stale_timeout: float = 300.0, mode: int = 0o644) -> None:
        self._context = FileLockContext(lock_file=os.fspath(lock_file), timeout=timeout,
                                        poll_interval=poll_interval, stale_timeout=stale_timeout, mode=mode)
        self._native: Any = None

    @property
    def lock_file(self) -> str:
        return self._context.lock_file

    @property
    def is_locked(self) -> bool:
        """Whether this instance holds the lock."""
        return self._context.is_locked

    @property
    def lock_counter(self) -> int:
        return self._context.lock_counter

    def _lock(self) -> Any:
        if self._native is None:
            ctx = self._context
            self._native = _core.lock_file(ctx.lock_file, "soft", compat="filelock",
                                           lifetime=float(ctx.stale_timeout), heartbeat=True, mode=ctx.mode)
        return self._native

    def _break_if_aged(self) -> bool:
        """libvcs's rule for locks holdfast cannot judge (libvcs's own, which
        record only a pid): older than ``stale_timeout`` by mtime => broken
        (race-free: only that lock, never a newer one)."""
        try:
            age = time.time() - os.stat(self._context.lock_file).st_mtime
        except OSError:
            return False
        if age <= self._context.stale_timeout:
            return False
        native = self._lock()
        st = native.status()
        holder = st.get("holder") or {}
        if st.get("stale") is None and holder.get("source") == "record" and holder.get("pid"):
            return False  # a holdfast holder proven alive keeps its lock
        with contextlib.suppress(Exception):
            return _core.break_native(native, force=True)
        return False

    def _args(self, timeout: Optional[float], blocking: bool) -> Optional[float]:
        if not blocking:
            return 0.0
        t = self._context.timeout if timeout is None else timeout
        return None if t < 0 else float(t)

    def acquire(self, timeout: Optional[float] = None, poll_interval: Optional[float] = None, *,
                blocking: bool = True) -> AcquireReturnProxy:
        """Acquires the lock (re-entrantly); :class:`FileLockTimeout` when the time runs out."""
        ctx = self._context
        if ctx.lock_file_fd is not None:
            ctx.lock_counter += 1
            return AcquireReturnProxy(self)
        wait = self._args(timeout, blocking)
        step = max(min(ctx.stale_timeout, 1.0), 0.01)  # how often to apply libvcs's age rule while waiting
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            self._break_if_aged()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            this = step if left is None else min(step, left)
            try:
                ctx.lock_file_fd = _core.acquire(self._lock(), this)
                ctx.lock_counter = 1
                return AcquireReturnProxy(self)
            except (_core.Busy + (_core.AlreadyHeld,)) as err:
                if left is not None and left <= this:
                    raise FileLockTimeout(ctx.lock_file, timeout if timeout is not None else ctx.timeout) \
                        from err

    def release(self, force: bool = False) -> None:
        """Releases one level (all with ``force``); the lock file goes at the last."""
        ctx = self._context
        if ctx.lock_file_fd is None:
            return
        ctx.lock_counter = 0 if force else ctx.lock_counter - 1
        if ctx.lock_counter <= 0:
            ctx.lock_counter = 0
            handle, ctx.lock_file_fd = ctx.lock_file_fd, None
            with contextlib.suppress(Exception):  # lost meanwhile: nothing of ours is left to remove
                handle.release()

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[type], exc_val: Optional[BaseException],
                 exc_tb: Optional[TracebackType]) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<FileLock({self.lock_file!r}, {'locked' if self.is_locked else 'unlocked'})>"


class AsyncFileLock:
    """:class:`FileLock` for asyncio: waits without blocking the event loop;
    a cancelled ``acquire()`` leaves nothing held."""

    def __init__(self, lock_file: Union[str, "os.PathLike[str]"], timeout: float = -1.0,
                 poll_interval: float = 0.05, stale_timeout: float = 300.0, mode: int = 0o644) -> None:
        self._sync_lock = FileLock(lock_file, timeout=timeout, poll_interval=poll_interval,
                                   stale_timeout=stale_timeout, mode=mode)

    @property
    def lock_file(self) -> str:
        return self._sync_lock.lock_file

    @property
    def is_locked(self) -> bool:
        return self._sync_lock.is_locked

    @property
    def lock_counter(self) -> int:
        return self._sync_lock.lock_counter

    async def acquire(self, timeout: Optional[float] = None, poll_interval: Optional[float] = None, *,
                      blocking: bool = True) -> AsyncAcquireReturnProxy:
        """As :meth:`FileLock.acquire`, awaited."""
        lk = self._sync_lock
        ctx = lk._context
        if ctx.lock_file_fd is not None:
            ctx.lock_counter += 1
            return AsyncAcquireReturnProxy(self)
        wait = lk._args(timeout, blocking)
        step = max(min(ctx.stale_timeout, 1.0), 0.01)
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            lk._break_if_aged()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            this = step if left is None else min(step, left)
            try:
                handle = await _core.acquire_async(lk._lock(), this)
            except (_core.Busy + (_core.AlreadyHeld,)) as err:
                if left is not None and left <= this:
                    raise FileLockTimeout(ctx.lock_file, timeout if timeout is not None else ctx.timeout) \
                        from err
                continue
            if ctx.lock_file_fd is not None:  # another task of this instance got it meanwhile
                handle.release()
                ctx.lock_counter += 1
            else:
                ctx.lock_file_fd, ctx.lock_counter = handle, 1
            return AsyncAcquireReturnProxy(self)

    async def release(self, force: bool = False) -> None:
        self._sync_lock.release(force=force)

    async def __aenter__(self) -> "AsyncFileLock":
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: Optional[type], exc_val: Optional[BaseException],
                        exc_tb: Optional[TracebackType]) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"<AsyncFileLock({self.lock_file!r}, {'locked' if self.is_locked else 'unlocked'})>"


def _init_paths(path: Union[str, "os.PathLike[str]"], marker_name: str) -> Tuple[pathlib.Path, pathlib.Path,
                                                                                 pathlib.Path]:
    p = pathlib.Path(path)
    return p, p / marker_name, p.parent / f".{p.name}.lock"


def _reset_partial(p: pathlib.Path, marker: pathlib.Path) -> None:
    # libvcs's documented two-file pattern: a directory without its marker is a partial
    # initialisation, cleared before init_fn runs again.
    if p.exists() and not marker.exists():
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True, exist_ok=True)


def _mark(marker: pathlib.Path) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)  # init_fn need not create the directory itself
    marker.touch()
    with contextlib.suppress(OSError):  # durable before the lock is released
        fd = os.open(marker.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_init(path: Union[str, "os.PathLike[str]"], init_fn: Callable[[], None], marker_name: str = ".initialized",
                timeout: float = 60.0, poll_interval: float = 0.05, stale_timeout: float = 300.0) -> bool:
    """Runs ``init_fn`` once across processes (lock ``<parent>/.<name>.lock``,
    marker ``<path>/<marker_name>``). True if this call initialised, False
    if it was already done. :class:`FileLockTimeout` after ``timeout``."""
    p, marker, lock_path = _init_paths(path, marker_name)
    if marker.exists():
        return False
    with FileLock(lock_path, timeout=timeout, poll_interval=poll_interval, stale_timeout=stale_timeout):
        if marker.exists():
            return False
        _reset_partial(p, marker)
        init_fn()
        _mark(marker)
        return True


async def async_atomic_init(path: Union[str, "os.PathLike[str]"],
                            init_fn: Union[Callable[[], None], Callable[[], Awaitable[None]]],
                            marker_name: str = ".initialized", timeout: float = 60.0, poll_interval: float = 0.05,
                            stale_timeout: float = 300.0) -> bool:
    """:func:`atomic_init` for asyncio; ``init_fn`` may be sync or async."""
    p, marker, lock_path = _init_paths(path, marker_name)
    if marker.exists():
        return False
    async with AsyncFileLock(lock_path, timeout=timeout, poll_interval=poll_interval, stale_timeout=stale_timeout):
        if marker.exists():
            return False
        _reset_partial(p, marker)
        result = init_fn()
        if inspect.isawaitable(result):
            await result
        _mark(marker)
        return True
