"""The locking primitives: Lock, LockFile, FifoLock, Semaphore."""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, TypeVar

from . import _native, _util
from ._errors import _already_held
from ._types import Holder, LockStatus
from ._util import StrPath

__all__ = ["Lock", "LockFile", "FifoLock", "Semaphore", "Acquired"]

_T = TypeVar("_T", bound="_Primitive")
_get_ident = threading.get_ident
_UNSET: Any = object()


class Acquired:
    """What ``acquire()`` returns: a context manager that releases, so
    ``with lock.acquire(timeout=5):`` works without acquiring twice."""

    __slots__ = ("lock",)

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __enter__(self) -> Any:
        return self.lock

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

    def __repr__(self) -> str:
        return f"<Acquired {self.lock!r}>"


class _Primitive:
    """Bookkeeping shared by the primitives: which thread or asyncio task
    holds which acquisition, re-entrancy, context managers."""

    _reentrant = False
    _timeout: Optional[float] = None
    _blocking = True

    def __init__(self) -> None:
        # owner (thread id or asyncio task) -> [handle, depth]
        self._held: Dict[Any, List[Any]] = {}

    # --- to be provided by subclasses -------------------------------------
    def _acquire_native(self, shared: bool, timeout: Optional[float], blocking: bool) -> Any:
        raise NotImplementedError

    def _acquire_native_async(self, shared: bool, timeout: Optional[float], blocking: bool, cb: Any) -> Any:
        raise NotImplementedError

    @property
    def path(self) -> str:
        raise NotImplementedError

    # --- common -----------------------------------------------------------
    def _args(self, timeout: Any, blocking: Any) -> "tuple[Optional[float], bool]":
        t = self._timeout if timeout is _UNSET else _util.timeout(timeout)
        b = self._blocking if blocking is _UNSET else _util.flag(blocking, "blocking")
        return t, b

    def _enter(self, owner: Any) -> bool:
        """True if `owner` already holds it and the nesting was counted."""
        ent = self._held.get(owner)
        if ent is None:
            return False
        if not self._reentrant:
            raise _already_held(self.path)
        ent[1] += 1
        return True

    def _release_owner(self, owner: Any) -> None:
        ent = self._held.get(owner)
        if ent is None and len(self._held) == 1:
            # Held by one other thread or task (acquired in a task started
            # with ensure_future, released by its creator): like
            # threading.Lock, let it be released from here.
            owner, ent = next(iter(self._held.items()))
        if ent is None:
            raise RuntimeError(
                f"release of {self.path}: this thread or task does not hold it"
                + (" (it is held by another thread or task)" if self._held else "")
            )
        ent[1] -= 1
        if ent[1] > 0:
            return
        del self._held[owner]
        ent[0].release()

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock (in any thread or task)."""
        return bool(self._held)

    def _handle(self) -> Any:
        ent = self._held.get(_util.owner())
        if ent is None and len(self._held) == 1:
            ent = next(iter(self._held.values()))
        return None if ent is None else ent[0]

    def release(self) -> None:
        """Releases the acquisition of the calling thread (or asyncio task).

        Raises RuntimeError if it holds none."""
        owner = threading.get_ident()
        if owner not in self._held:
            owner = _util.owner()
        self._release_owner(owner)

    def __enter__(self: _T) -> _T:
        self.acquire()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._release_owner(threading.get_ident())

    async def __aenter__(self: _T) -> _T:
        await self.acquire_async()  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._release_owner(_util.owner())

    def __del__(self) -> None:
        held, self._held = getattr(self, "_held", {}), {}
        for ent in held.values():
            try:
                ent[0].release()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "locked" if self._held else "unlocked"
        return f"<{type(self).__name__} {self.path!r} {state}>"


class Lock(_Primitive):
    """A kernel lock on a file path (``flock(2)``, or open-file-description
    ``fcntl`` locks with ``backend="ofd"``): exclusive or shared, excluding
    threads and processes alike, naming its holder when it is in the way.

    ::

        with holdfast.Lock("/tmp/app.lock", timeout=5) as lock:
            print("fencing token", lock.token)

    A thread (or asyncio task) holds it until it releases it; another thread
    of this process waits like another process would. With
    ``reentrant=True`` the holder may acquire it again (counted); otherwise
    that raises :class:`AlreadyHeld` instead of deadlocking. Waiting
    releases the GIL; in the main thread Ctrl-C interrupts a wait with
    ``KeyboardInterrupt`` and nothing held. A forked child never releases
    the parent's lock.
    """

    def __init__(
        self,
        path: StrPath,
        *,
        shared: bool = False,
        backend: str = "flock",
        reentrant: bool = False,
        record: bool = True,
        create_parents: bool = False,
        follow_symlinks: bool = False,
        mode: int = 0o644,
        timeout: Optional[float] = None,
        blocking: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(backend, str):
            raise TypeError(f"backend must be \"flock\" or \"ofd\", not {type(backend).__name__}")
        self._shared = _util.flag(shared, "shared")
        self._reentrant = _util.flag(reentrant, "reentrant")
        self._timeout = _util.timeout(timeout)
        self._blocking = _util.flag(blocking, "blocking")
        self._native = _native.NativeLock(
            _util.fspath(path),
            backend=backend,
            record=_util.flag(record, "record"),
            create_parents=_util.flag(create_parents, "create_parents"),
            follow_symlinks=_util.flag(follow_symlinks, "follow_symlinks"),
            mode=_util.file_mode(mode),
        )
        self._path = os.fsdecode(self._native.path)

    @property
    def path(self) -> str:
        """The lock file's path."""
        return self._path

    def acquire(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET, *, shared: Optional[bool] = None) -> Acquired:
        """Takes the lock (exclusive unless the lock or this call says
        ``shared``), waiting at most ``timeout`` seconds (None: as long as it
        takes; the default is the constructor's). Returns the lock, so
        ``with lock.acquire(timeout=5):`` works.

        Raises :class:`Timeout` or (``blocking=False``) :class:`WouldBlock`
        naming the holder, :class:`AlreadyHeld`, or an ``OSError``."""
        owner = threading.get_ident()
        if owner in self._held and self._enter(owner):
            return Acquired(self)
        t, b = self._args(timeout, blocking)
        sh = self._shared if shared is None else _util.flag(shared, "shared")
        handle = self._native.acquire(sh, t, b, owner == _util._main_ident)
        self._held[owner] = [handle, 1]
        return Acquired(self)

    # The hot path of `with lock:`, kept short: it is most of what Python
    # adds to the kernel's two system calls.
    def __enter__(self) -> "Lock":
        owner = _get_ident()
        if owner in self._held and self._enter(owner):
            return self
        self._held[owner] = [
            self._native.acquire(self._shared, self._timeout, self._blocking, owner == _util._main_ident),
            1,
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        owner = _get_ident()
        ent = self._held.get(owner)
        if ent is not None and ent[1] == 1:
            del self._held[owner]
            ent[0].release()
        else:
            self._release_owner(owner)

    async def acquire_async(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET, *, shared: Optional[bool] = None) -> "Lock":
        """As :meth:`acquire`, without blocking the event loop. The wait
        happens in the kernel (a helper blocked in the lock call, watched
        through its pidfd); cancelling the task (``asyncio.wait_for``,
        ``task.cancel()``) leaves nothing held. Each task holds its own
        acquisition: tasks exclude each other as processes do."""
        owner = _util.owner()
        if self._enter(owner):
            return self
        t, b = self._args(timeout, blocking)
        sh = self._shared if shared is None else _util.flag(shared, "shared")
        handle = await _util.await_native(lambda cb: self._native.acquire_async(sh, t, b, cb))
        self._held[owner] = [handle, 1]
        return self

    @property
    def is_locked(self) -> bool:
        """Whether this object holds the lock (filelock's name for
        :attr:`locked`)."""
        return bool(self._held)

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the calling thread's (or task's) exclusive
        acquisition: larger than every earlier one on this lock file. None
        when not held, shared, or the file carries no holder record."""
        h = self._handle()
        return None if h is None else h.token

    @property
    def mode(self) -> Optional[str]:
        """"exclusive" or "shared" while held by the caller, else None."""
        h = self._handle()
        return None if h is None else h.mode

    def fileno(self) -> int:
        """The descriptor holding the caller's lock (to hand to a child)."""
        h = self._handle()
        if h is None:
            raise RuntimeError(f"{self._path} is not held by this thread or task")
        return int(h.fileno())

    def holders(self) -> List[Holder]:
        """Who holds the lock now (any process), as far as can be told."""
        return [Holder._from_dict(d) for d in self._native.holders()]

    def status(self) -> LockStatus:
        """As :func:`holdfast.status` for this lock's path."""
        return LockStatus._from_dict(_native.status(os.fsencode(self._path)))

    def upgrade(self, timeout: Optional[float] = None, blocking: bool = True) -> None:
        """Shared to exclusive. Atomic with ``backend="ofd"``; with flock
        another process may get in between."""
        h = self._held.get(threading.get_ident())
        if h is None:
            raise RuntimeError(f"{self._path} is not held by this thread")
        h[0].upgrade(_util.timeout(timeout), _util.flag(blocking, "blocking"))

    def downgrade(self) -> None:
        """Exclusive to shared."""
        h = self._held.get(threading.get_ident())
        if h is None:
            raise RuntimeError(f"{self._path} is not held by this thread")
        h[0].downgrade()


class LockFile(_Primitive):
    """A lock file, for where kernel locks do not reach (NFS, several
    hosts), speaking the Python peers' formats so they and holdfast exclude
    each other: ``protocol="soft"`` (``O_EXCL``; filelock's
    ``SoftFileLock`` with ``compat="filelock"``), ``"link"`` (flufl.lock's
    NFS-safe protocol), ``"mkdir"`` (lockfile's ``MkdirLockFile`` with
    ``compat="lockfile"``). Stale locks (dead holder, expired lease) are
    taken over safely; waiting uses inotify, not a sleep loop.
    """

    def __init__(
        self,
        path: StrPath,
        protocol: str = "soft",
        *,
        compat: Optional[str] = None,
        lifetime: Optional[float] = None,
        heartbeat: Optional[bool] = None,
        create_parents: bool = False,
        mode: int = 0o644,
        timeout: Optional[float] = None,
        blocking: bool = True,
        reentrant: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(protocol, str):
            raise TypeError(f"protocol must be \"soft\", \"link\" or \"mkdir\", not {type(protocol).__name__}")
        if compat is not None and not isinstance(compat, str):
            raise TypeError(f"compat must be a str or None, not {type(compat).__name__}")
        self._timeout = _util.timeout(timeout)
        self._blocking = _util.flag(blocking, "blocking")
        self._reentrant = _util.flag(reentrant, "reentrant")
        self._native = _native.NativeLockFile(
            _util.fspath(path),
            protocol=protocol,
            compat=compat,
            lifetime=_util.timeout(lifetime, "lifetime"),
            heartbeat=None if heartbeat is None else _util.flag(heartbeat, "heartbeat"),
            create_parents=_util.flag(create_parents, "create_parents"),
            mode=_util.file_mode(mode),
        )
        self._path = os.fsdecode(self._native.path)
        self.protocol = protocol

    @property
    def path(self) -> str:
        """The lock's path on disk."""
        return self._path

    @property
    def lifetime(self) -> Optional[float]:
        """The lease in seconds, if the lock has one."""
        return self._native.lifetime

    def acquire(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET) -> Acquired:
        """Takes the lock file; as :meth:`Lock.acquire`."""
        owner = threading.get_ident()
        if self._enter(owner):
            return Acquired(self)
        t, b = self._args(timeout, blocking)
        self._held[owner] = [self._native.acquire(t, b, _util.in_main_thread()), 1]
        return Acquired(self)

    async def acquire_async(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET) -> "LockFile":
        """As :meth:`acquire` without blocking the event loop (the wait
        runs on a helper thread, cancellable within 0.1 s)."""
        owner = _util.owner()
        if self._enter(owner):
            return self
        t, b = self._args(timeout, blocking)
        handle = await _util.await_native(lambda cb: self._native.acquire_async(t, b, cb))
        self._held[owner] = [handle, 1]
        return self

    def i_am_locking(self) -> bool:
        """Whether this object holds the lock and it is still its own."""
        return bool(self._native.i_am_locking())

    def is_locked(self) -> bool:
        """Whether anybody holds the lock file (possibly a stale holder
        that a waiter would take over); :attr:`locked` says whether this
        object does."""
        return bool(self._native.is_locked())

    def break_lock(self, force: bool = False) -> bool:
        """Removes the lock if its holder is gone (dead process, expired
        lease); True if something was removed. A live lock is left alone
        unless ``force`` is true. Race-free: a lock a new holder took
        meanwhile is never removed on its predecessor's account."""
        return bool(self._native.break_lock(_util.flag(force, "force")))

    def refresh(self) -> None:
        """Renews the lease of the lock this object holds."""
        self._native.refresh()

    def check(self) -> None:
        """Raises :class:`LockLost` if the caller's lock was broken or its
        lease ran out."""
        h = self._handle()
        if h is None:
            raise RuntimeError(f"{self._path} is not held by this thread or task")
        h.check()

    def status(self) -> LockStatus:
        """Holder, lease, stale verdict of the lock file, without taking it."""
        d = dict(self._native.status())
        d["kind"] = "lockfile"
        d["exists"] = d["locked"]
        d["mode"] = "exclusive" if d["locked"] else None
        d["holders"] = [d["holder"]] if d.get("holder") else []
        return LockStatus._from_dict(d)

    def holders(self) -> List[Holder]:
        """The holder of the lock file, if any."""
        return self.status().holders


class FifoLock(_Primitive):
    """A lock that serves waiters in arrival order across processes (a
    ticket queue in ``PATH.fifo`` in front of the kernel lock). Every
    acquisition, in any thread or task, takes its own ticket."""

    def __init__(
        self,
        path: StrPath,
        *,
        shared: bool = False,
        backend: str = "flock",
        record: bool = True,
        create_parents: bool = False,
        follow_symlinks: bool = False,
        mode: int = 0o644,
        queue_path: Optional[StrPath] = None,
        remove_queue_when_idle: bool = False,
        timeout: Optional[float] = None,
        blocking: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(backend, str):
            raise TypeError(f"backend must be \"flock\" or \"ofd\", not {type(backend).__name__}")
        self._shared = _util.flag(shared, "shared")
        self._timeout = _util.timeout(timeout)
        self._blocking = _util.flag(blocking, "blocking")
        self._native = _native.NativeFifoLock(
            _util.fspath(path),
            backend=backend,
            record=_util.flag(record, "record"),
            create_parents=_util.flag(create_parents, "create_parents"),
            follow_symlinks=_util.flag(follow_symlinks, "follow_symlinks"),
            mode=_util.file_mode(mode),
            queue_path=None if queue_path is None else _util.fspath(queue_path, "queue_path"),
            remove_queue_when_idle=_util.flag(remove_queue_when_idle, "remove_queue_when_idle"),
        )
        self._path = os.fsdecode(self._native.path)

    @property
    def path(self) -> str:
        return self._path

    def acquire(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET, *, shared: Optional[bool] = None) -> Acquired:
        """Queues for the lock and waits for its turn; as :meth:`Lock.acquire`."""
        owner = threading.get_ident()
        if self._enter(owner):
            return Acquired(self)
        t, b = self._args(timeout, blocking)
        sh = self._shared if shared is None else _util.flag(shared, "shared")
        self._held[owner] = [self._native.acquire(sh, t, b), 1]
        return Acquired(self)

    async def acquire_async(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET, *, shared: Optional[bool] = None) -> "FifoLock":
        """As :meth:`acquire` without blocking the event loop."""
        owner = _util.owner()
        if self._enter(owner):
            return self
        t, b = self._args(timeout, blocking)
        sh = self._shared if shared is None else _util.flag(shared, "shared")
        handle = await _util.await_native(lambda cb: self._native.acquire_async(sh, t, b, cb))
        self._held[owner] = [handle, 1]
        return self

    @property
    def token(self) -> Optional[int]:
        h = self._handle()
        return None if h is None else h.token

    def queue_len(self) -> int:
        """Live tickets in the queue (the holder plus waiters, any process)."""
        return int(self._native.queue_len())

    @property
    def ticket(self) -> Optional[int]:
        """The caller's ticket number in the queue, while held."""
        h = self._handle()
        return None if h is None else h.ticket

    def holders(self) -> List[Holder]:
        return [Holder._from_dict(d) for d in self._native.holders()]


class Semaphore:
    """At most ``n`` holders at a time across processes; a crashed holder
    never leaks its slot. Each :meth:`acquire` takes one permit, released by
    :meth:`release` (last taken, first released, per thread or task) or by
    leaving the ``with`` block."""

    def __init__(
        self,
        path: StrPath,
        n: int,
        *,
        create_parents: bool = False,
        mode: int = 0o644,
        remove_when_idle: bool = False,
        timeout: Optional[float] = None,
        blocking: bool = True,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 1:
            raise ValueError(f"a semaphore needs at least one permit (got n={n})")
        self._timeout = _util.timeout(timeout)
        self._blocking = _util.flag(blocking, "blocking")
        self._native = _native.NativeSemaphore(
            _util.fspath(path),
            n,
            create_parents=_util.flag(create_parents, "create_parents"),
            mode=_util.file_mode(mode),
            remove_when_idle=_util.flag(remove_when_idle, "remove_when_idle"),
        )
        self._path = os.fsdecode(self._native.path)
        self._held: Dict[Any, List[Any]] = {}

    @property
    def path(self) -> str:
        return self._path

    @property
    def permits(self) -> int:
        """How many holders may hold it at once."""
        return int(self._native.permits)

    def available(self) -> int:
        """Free permits now (any process)."""
        return int(self._native.available())

    def holders(self) -> List[Holder]:
        return [Holder._from_dict(d) for d in self._native.holders()]

    def _args(self, timeout: Any, blocking: Any) -> "tuple[Optional[float], bool]":
        t = self._timeout if timeout is _UNSET else _util.timeout(timeout)
        b = self._blocking if blocking is _UNSET else _util.flag(blocking, "blocking")
        return t, b

    def acquire(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET) -> Acquired:
        """Takes a permit, waiting at most ``timeout`` seconds."""
        t, b = self._args(timeout, blocking)
        p = self._native.acquire(t, b)
        self._held.setdefault(threading.get_ident(), []).append(p)
        return Acquired(self)

    async def acquire_async(self, timeout: Optional[float] = _UNSET, blocking: bool = _UNSET) -> "Semaphore":
        """As :meth:`acquire` without blocking the event loop."""
        t, b = self._args(timeout, blocking)
        owner = _util.owner()
        p = await _util.await_native(lambda cb: self._native.acquire_async(t, b, cb))
        self._held.setdefault(owner, []).append(p)
        return self

    def _release(self, owner: Any) -> None:
        stack = self._held.get(owner)
        if not stack and len(self._held) == 1:
            owner, stack = next(iter(self._held.items()))
        if not stack:
            raise RuntimeError(f"release of {self._path}: this thread or task holds no permit")
        p = stack.pop()
        if not stack:
            del self._held[owner]
        p.release()

    def release(self) -> None:
        """Releases the permit the calling thread (or task) took last."""
        owner = threading.get_ident()
        if owner not in self._held:
            owner = _util.owner()
        self._release(owner)

    @property
    def slot(self) -> Optional[int]:
        """The slot of the caller's last permit, while held."""
        stack = self._held.get(_util.owner()) or self._held.get(threading.get_ident())
        return stack[-1].slot if stack else None

    @property
    def locked(self) -> bool:
        """Whether this object holds any permit."""
        return bool(self._held)

    def __enter__(self) -> "Semaphore":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release(threading.get_ident())

    async def __aenter__(self) -> "Semaphore":
        return await self.acquire_async()

    async def __aexit__(self, *exc: Any) -> None:
        self._release(_util.owner())

    def __repr__(self) -> str:
        return f"<Semaphore {self._path!r} n={self.permits} held={sum(map(len, self._held.values()))}>"
