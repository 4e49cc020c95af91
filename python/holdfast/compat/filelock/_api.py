"""filelock's lock classes over holdfast (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
import weakref
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar

from .. import _core

_T = TypeVar("_T", bound="BaseFileLock")

#: "no mode given": the lock file gets 0o666 minus the umask, as with filelock.
_UNSET_FILE_MODE = -1


class Timeout(TimeoutError):
    """Raised when the lock could not be acquired in *timeout* seconds.

    :param lock_file: the path of the file lock
    :param holder: a description of the lock's holder, when known
    """

    def __init__(self, lock_file: str, holder: Optional[str] = None) -> None:
        super().__init__()
        self._lock_file = lock_file
        self._holder = holder

    def __reduce__(self) -> Any:
        return self.__class__, (self._lock_file,), self.__dict__

    def __str__(self) -> str:
        message = f"The file lock '{self._lock_file}' could not be acquired."
        if self._holder is None:
            return message
        return f"{message} It is held by {self._holder}."

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.lock_file!r})"

    @property
    def lock_file(self) -> str:
        """The path of the file lock."""
        return self._lock_file


class _Context:
    """What filelock calls a lock's context: its settings and hold state."""

    def __init__(self, lock_file: str, timeout: float, mode: int, blocking: bool, poll_interval: float,
                 lifetime: Optional[float]) -> None:
        self.lock_file = lock_file
        self.timeout = timeout
        self.mode = mode
        self.blocking = blocking
        self.poll_interval = poll_interval
        self.lifetime = lifetime
        self.lock_counter = 0
        self.handle: Any = None


class _ThreadLocalContext(_Context, threading.local):
    """Per-thread context (``thread_local=True``, the default)."""


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    return float(value)


def _check_blocking(blocking: Any) -> None:
    if not isinstance(blocking, bool):
        raise TypeError(f"blocking must be a bool, not {type(blocking).__name__}")


def _check_poll(poll_interval: Any) -> float:
    p = _check_seconds("poll_interval", poll_interval)
    if p != p or p < 0 or p == float("inf") or p > threading.TIMEOUT_MAX:
        raise ValueError(f"poll_interval must be finite and non-negative, not {poll_interval!r}")
    return p


def _check_mode(mode: Any, cls_name: str) -> None:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int, not {type(mode).__name__}")
    if mode == _UNSET_FILE_MODE:
        return
    if not 0 <= mode <= 0o777 or (mode & 0o600) != 0o600:
        raise ValueError(f"{cls_name} mode {oct(mode)} must be within 0o000-0o777 and grant the owner read and write")


def _canonical(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


class _FileLockMeta(type):
    """Builds instances; with ``is_singleton=True`` one instance per class and path."""

    def __call__(cls, lock_file: Any, timeout: float = -1, mode: int = _UNSET_FILE_MODE, thread_local: Any = None,
                 *, blocking: bool = True, is_singleton: bool = False, poll_interval: float = 0.05,
                 lifetime: Optional[float] = None, **kwargs: Any) -> Any:
        if thread_local is None:
            thread_local = getattr(cls, "_default_thread_local", True)
        _check_blocking(blocking)
        _check_seconds("timeout", timeout)
        poll_interval = _check_poll(poll_interval)
        _check_mode(mode, cls.__name__)
        if not is_singleton:
            return super().__call__(lock_file, timeout, mode, thread_local, blocking=blocking,
                                    is_singleton=is_singleton, poll_interval=poll_interval, lifetime=lifetime,
                                    **kwargs)
        instances: "weakref.WeakValueDictionary[str, Any]" = cls.__dict__["_instances"]
        key = _canonical(os.fspath(lock_file))
        with cls.__dict__["_instances_lock"]:
            inst = instances.get(key)
            if inst is None:
                inst = super().__call__(lock_file, timeout, mode, thread_local, blocking=blocking,
                                        is_singleton=is_singleton, poll_interval=poll_interval, lifetime=lifetime,
                                        **kwargs)
                instances[key] = inst
                return inst
        mismatch = {
            name: (str(passed), str(have))
            for name, (passed, have) in {
                "thread_local": (thread_local, inst.is_thread_local()),
                "timeout": (timeout if timeout >= 0 else -1, inst.timeout if inst.timeout >= 0 else -1),
                "mode": (mode, inst._context.mode),
                "blocking": (blocking, inst.blocking),
                "poll_interval": (poll_interval, inst.poll_interval),
                "lifetime": (lifetime, inst.lifetime),
            }.items()
            if passed != have
        }
        if mismatch:
            raise ValueError(f"Singleton lock instances cannot be initialized with differing arguments\n"
                             f"Non-matching arguments: {mismatch}")
        return inst


class BaseFileLock(contextlib.ContextDecorator, metaclass=_FileLockMeta):
    """Abstract base class for a file lock object (filelock's API).

    Waiting happens in the kernel (or, for soft locks, on inotify): the
    ``poll_interval`` argument is accepted and ignored, except as the period
    at which a ``cancel_check`` callback is asked."""

    _instances: "weakref.WeakValueDictionary[str, BaseFileLock]"
    _instances_lock: "threading.Lock"
    _default_thread_local = True
    _on_acquired_supported = True
    _preserve_lock_file_supported = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakValueDictionary()
        cls._instances_lock = threading.Lock()

    def __init__(self, lock_file: Any, timeout: float = -1, mode: int = _UNSET_FILE_MODE,
                 thread_local: bool = True, *, blocking: bool = True, is_singleton: bool = False,
                 poll_interval: float = 0.05, lifetime: Optional[float] = None,
                 context_error_policy: str = "chain", close_error_policy: str = "default",
                 fallback_to_soft: bool = True, preserve_lock_file: bool = False,
                 on_acquired: Optional[Callable[[int], None]] = None) -> None:
        if context_error_policy not in ("chain", "group"):
            raise ValueError(f"context_error_policy must be 'chain' or 'group', not {context_error_policy!r}")
        if close_error_policy not in ("default", "raise", "suppress"):
            raise ValueError(f"close_error_policy must be 'default', 'raise' or 'suppress', not {close_error_policy!r}")
        if on_acquired is not None and not type(self)._on_acquired_supported:
            raise ValueError(f"{type(self).__name__} does not support on_acquired")
        if preserve_lock_file and not type(self)._preserve_lock_file_supported:
            raise ValueError(f"{type(self).__name__} does not support preserve_lock_file=True")
        self._on_acquired = on_acquired
        self._context_error_policy = context_error_policy
        self._close_error_policy = close_error_policy
        self._fallback_to_soft = bool(fallback_to_soft)
        self._preserve_lock_file = bool(preserve_lock_file)
        path = os.fspath(lock_file)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        self._is_thread_local = bool(thread_local)
        self._is_singleton = bool(is_singleton)
        self._creator_pid = os.getpid()
        ctx_cls = _ThreadLocalContext if thread_local else _Context
        self._context: _Context = ctx_cls(path, float(timeout), mode, blocking, float(poll_interval), lifetime)
        self._native_obj: Any = None
        self._native_lock = threading.Lock()
        # Every live hold, so release(force=True) and __del__ can drop them all.
        self._holds: Dict[int, Any] = {}

    # --- backend hooks ---------------------------------------------------
    def _make_native(self) -> Any:
        raise NotImplementedError

    def _native(self) -> Any:
        with self._native_lock:
            if self._native_obj is None:
                self._native_obj = self._make_native()
            return self._native_obj

    def _file_mode(self, default: int) -> int:
        mode = self._context.mode
        return default if mode == _UNSET_FILE_MODE else mode

    # --- properties ------------------------------------------------------
    def is_thread_local(self) -> bool:
        """:returns: a flag indicating if this lock is thread local or not"""
        return self._is_thread_local

    @property
    def is_singleton(self) -> bool:
        """:returns: a flag indicating if this lock is singleton or not"""
        return self._is_singleton

    @property
    def lock_file(self) -> str:
        """Path to the lock file."""
        return self._context.lock_file

    @property
    def timeout(self) -> float:
        """The default timeout value, in seconds (negative: wait forever)."""
        return self._context.timeout

    @timeout.setter
    def timeout(self, value: Any) -> None:
        self._context.timeout = float(value)

    @property
    def blocking(self) -> bool:
        """Whether the locking is blocking or not."""
        return self._context.blocking

    @blocking.setter
    def blocking(self, value: bool) -> None:
        _check_blocking(value)
        self._context.blocking = value

    @property
    def poll_interval(self) -> float:
        """The default polling interval (accepted; holdfast waits in the kernel)."""
        return self._context.poll_interval

    @poll_interval.setter
    def poll_interval(self, value: float) -> None:
        self._context.poll_interval = _check_poll(value)

    @property
    def lifetime(self) -> Optional[float]:
        """For soft locks, the lock file's age after which a waiter may take it."""
        return self._context.lifetime

    @lifetime.setter
    def lifetime(self, value: Optional[float]) -> None:
        self._context.lifetime = value

    @property
    def mode(self) -> int:
        """The file permissions for the lockfile."""
        return self._file_mode(0o666 & ~_umask())

    @property
    def is_locked(self) -> bool:
        """Whether this object (in this thread, for thread-local locks) holds the lock."""
        return self._context.handle is not None

    @property
    def lock_counter(self) -> int:
        """The number of times this lock has been acquired (but not yet released)."""
        return self._context.lock_counter

    # --- acquire / release -----------------------------------------------
    def _resolve(self, timeout: Optional[float], poll_interval: Optional[float], poll_intervall: Optional[float],
                 blocking: Optional[bool]) -> Tuple[Optional[float], bool, float]:
        if os.getpid() != self._creator_pid and self._context.handle is not None:
            raise RuntimeError(f"lock '{self.lock_file}' was inherited across a fork; create a new lock in the child")
        if timeout is None:
            timeout = self._context.timeout
        if blocking is None:
            blocking = self._context.blocking
        _check_blocking(blocking)
        if poll_intervall is not None:
            warnings.warn("use poll_interval instead of poll_intervall", DeprecationWarning, stacklevel=3)
            poll_interval = poll_intervall
        poll = _check_poll(self._context.poll_interval if poll_interval is None else poll_interval)
        t = float(timeout)
        if t != t and blocking:
            raise ValueError("timeout must not be NaN")
        return _core.seconds(t) if blocking else 0.0, blocking, poll

    def _map_busy(self, err: BaseException, wait: Optional[float]) -> BaseException:
        if isinstance(err, _core.AlreadyHeld):
            if wait is None:
                return RuntimeError(
                    f"Deadlock: lock '{self.lock_file}' is already held by a different lock instance in this thread. "
                    f"Use is_singleton=True to enable reentrant locking across instances.")
        holders = getattr(err, "holders", None) or []
        desc = getattr(holders[0], "description", None) if holders else None
        t = Timeout(self.lock_file, desc)
        t.__cause__ = err
        return t

    def acquire(self, timeout: Optional[float] = None, poll_interval: Optional[float] = None, *,
                poll_intervall: Optional[float] = None, blocking: Optional[bool] = None,
                cancel_check: Optional[Callable[[], bool]] = None) -> "AcquireReturnProxy":
        """Try to acquire the file lock.

        :param timeout: maximum wait in seconds; ``None`` means the default :attr:`timeout`; negative: no limit
        :param poll_interval: accepted for compatibility; holdfast waits in the kernel, not in a sleep loop
        :param blocking: ``False`` makes one attempt and raises :class:`Timeout` on failure
        :param cancel_check: asked every ``poll_interval`` while waiting; ``True`` raises :class:`Timeout`
        :raises Timeout: if the lock could not be acquired in time
        """
        wait, blocking, poll = self._resolve(timeout, poll_interval, poll_intervall, blocking)
        ctx = self._context
        if ctx.handle is not None:
            ctx.lock_counter += 1
            return AcquireReturnProxy(lock=self)
        native = self._native()
        try:
            if cancel_check is None:
                handle = _core.acquire(native, wait, blocking)
            else:
                handle = _core.acquire_sliced(native, wait, poll, cancel_check, blocking)
                if handle is None:
                    raise Timeout(self.lock_file)
        except (_core.Busy + (_core.AlreadyHeld,)) as err:
            raise self._map_busy(err, wait) from err
        ctx.handle = handle
        ctx.lock_counter = 1
        self._holds[id(handle)] = handle
        self._run_on_acquired(handle)
        return AcquireReturnProxy(lock=self)

    def _run_on_acquired(self, handle: Any) -> None:
        if self._on_acquired is None:
            return
        try:
            self._on_acquired(int(handle.fileno()))
        except BaseException:
            self.release(force=True)
            raise

    @property
    def on_acquired(self) -> Optional[Callable[[int], None]]:
        """The callable invoked with the lock descriptor after each physical acquisition."""
        return self._on_acquired

    @property
    def context_error_policy(self) -> str:
        return self._context_error_policy

    @property
    def close_error_policy(self) -> str:
        return self._close_error_policy

    @property
    def fallback_to_soft(self) -> bool:
        return self._fallback_to_soft

    @property
    def preserve_lock_file(self) -> bool:
        """Always true in effect on Linux: the kernel lock's file is never unlinked."""
        return self._preserve_lock_file

    def release(self, force: bool = False) -> None:
        """Releases the lock once the lock counter reaches 0 (or at once with ``force``)."""
        ctx = self._context
        if ctx.handle is None or os.getpid() != self._creator_pid:
            return
        if not force and ctx.lock_counter > 1:
            ctx.lock_counter -= 1
            return
        handle, ctx.handle, ctx.lock_counter = ctx.handle, None, 0
        self._holds.pop(id(handle), None)
        handle.release()

    def __enter__(self: _T) -> _T:
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc_value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.release()

    def __del__(self) -> None:
        if os.getpid() != getattr(self, "_creator_pid", None):
            return
        for handle in list(getattr(self, "_holds", {}).values()):
            with contextlib.suppress(Exception):
                handle.release()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lock_file!r})"


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


class AcquireReturnProxy:
    """A context-aware object that will release the lock file when exiting."""

    def __init__(self, lock: BaseFileLock) -> None:
        self.lock = lock

    def __enter__(self) -> BaseFileLock:
        return self.lock

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc_value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.lock.release()


class UnixFileLock(BaseFileLock):
    """``flock(2)`` on exactly ``lock_file``, as filelock's: the file is never
    deleted. Waits in the kernel; names its holder in :class:`Timeout`."""

    def _make_native(self) -> Any:
        return _core.kernel_lock(self.lock_file, mode=self._file_mode(0o666))


class SoftFileLock(BaseFileLock):
    """An ``O_CREAT|O_EXCL`` lock file in filelock's record format
    (``<pid>\\n<host>\\n<start token>\\n``), removed on release.

    A lock left by a dead holder on this host is taken over at once (pid and
    start time checked, as filelock 4 does). Unlike filelock, a holder alive
    past ``lifetime`` keeps its lock: holdfast refreshes the file's mtime
    while it holds it (filelock's ``lifetime`` lets a waiter delete a live
    holder's lock)."""

    _on_acquired_supported = False
    _preserve_lock_file_supported = False

    def _make_native(self) -> Any:
        return _core.lock_file(self.lock_file, "soft", compat="filelock", lifetime=self.lifetime,
                               heartbeat=self.lifetime is not None,
                               mode=self._file_mode(0o644) & ~0o022)


class WindowsFileLock(BaseFileLock):
    """filelock's Windows lock; on other systems it raises as filelock does."""

    def _make_native(self) -> Any:
        raise NotImplementedError("WindowsFileLock is only available on Windows")

    def acquire(self, *args: Any, **kwargs: Any) -> "AcquireReturnProxy":
        raise NotImplementedError("WindowsFileLock is only available on Windows")
