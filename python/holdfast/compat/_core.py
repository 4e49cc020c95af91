"""What the compat modules share: holdfast's native primitives, waited on
in the kernel, and the mapping of holdfast's errors onto each original's.

Private: the compat modules are the public face; this module may change.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional

from .. import _native
from .._errors import AlreadyHeld, InvalidInput, Timeout, WouldBlock

__all__ = [
    "AlreadyHeld",
    "InvalidInput",
    "Busy",
    "kernel_lock",
    "lock_file",
    "acquire",
    "acquire_async",
    "seconds",
]

#: What holdfast raises when a lock is taken by someone else.
Busy = (Timeout, WouldBlock)

#: Longest wait handed to the kernel in one call (about 10 years, as threading.TIMEOUT_MAX-ish).
_MAX_WAIT = 315_576_000.0

_main_ident = threading.main_thread().ident


def _in_main_thread() -> bool:
    return threading.get_ident() == _main_ident


def _bytes(path: Any) -> bytes:
    p = os.fspath(path)
    return p if isinstance(p, bytes) else os.fsencode(p)


def kernel_lock(path: Any, *, mode: int = 0o666, record: bool = True, create_parents: bool = False,
                follow_symlinks: bool = False, backend: str = "flock") -> Any:
    """A native kernel lock (flock by default) on exactly ``path``."""
    return _native.NativeLock(
        _bytes(path),
        backend=backend,
        record=record,
        create_parents=create_parents,
        follow_symlinks=follow_symlinks,
        mode=mode,
    )


def lock_file(path: Any, protocol: str, *, compat: Optional[str] = None, lifetime: Optional[float] = None,
              heartbeat: Optional[bool] = None, create_parents: bool = False, mode: int = 0o644) -> Any:
    """A native lock file (soft / link / mkdir) in ``compat``'s on-disk
    format. ``heartbeat`` (renew the lease while held) defaults to whether
    there is a lifetime."""
    if heartbeat is None:
        heartbeat = lifetime is not None
    return _native.NativeLockFile(
        _bytes(path),
        protocol=protocol,
        compat=compat,
        lifetime=lifetime,
        heartbeat=heartbeat,
        create_parents=create_parents,
        mode=mode,
    )


def break_native(native: Any, force: bool) -> bool:
    """Breaks a native lock file: with ``force`` whatever lock is there now
    (and only that one), else only a stale one (decided on the very object
    the break removes). True if something was removed."""
    try:
        return bool(native.break_lock(force))
    except TypeError:
        if not force:
            raise
        return bool(native.break_lock())


def seconds(timeout: Optional[float]) -> Optional[float]:
    """``None`` (forever) or a finite, non-negative wait in seconds."""
    if timeout is None:
        return None
    t = float(timeout)
    if t != t:
        raise ValueError("timeout must not be NaN")
    if t < 0 or t >= _MAX_WAIT:
        return None
    return t


def acquire(native: Any, timeout: Optional[float], blocking: bool = True, shared: bool = False) -> Any:
    """Takes ``native`` (a NativeLock or NativeLockFile), waiting in the
    kernel at most ``timeout`` seconds (None: forever). Returns the handle;
    raises holdfast's Timeout / WouldBlock / AlreadyHeld."""
    if not blocking:
        timeout = 0.0
    interruptible = _in_main_thread()
    if isinstance(native, _native.NativeLock):
        return native.acquire(shared, timeout, blocking and timeout != 0.0, interruptible)
    return native.acquire(timeout, blocking and timeout != 0.0, interruptible)


def acquire_sliced(native: Any, timeout: Optional[float], slice_s: float, stop: Callable[[], bool],
                   blocking: bool = True, shared: bool = False) -> Optional[Any]:
    """As :func:`acquire`, but asks ``stop()`` every ``slice_s`` seconds while
    waiting (for the originals' cancel/stop-waiting callbacks). Returns None
    when ``stop()`` said so; the wait itself still happens in the kernel."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    slice_s = max(float(slice_s), 0.001)
    while True:
        if stop():
            return None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = slice_s if left is None else min(slice_s, left)
        try:
            return acquire(native, step, blocking, shared)
        except Busy:
            if not blocking or (left is not None and left <= step):
                raise


async def acquire_async(native: Any, timeout: Optional[float], blocking: bool = True, shared: bool = False) -> Any:
    """As :func:`acquire` without blocking the event loop; cancelling the
    awaiting task leaves nothing held."""
    from .._util import await_native

    if not blocking:
        timeout = 0.0
    b = blocking and timeout != 0.0
    if isinstance(native, _native.NativeLock):
        return await await_native(lambda cb: native.acquire_async(shared, timeout, b, cb))
    return await await_native(lambda cb: native.acquire_async(timeout, b, cb))
