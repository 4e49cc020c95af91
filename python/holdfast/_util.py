"""Argument checking and the asyncio bridge shared by the primitives."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from typing import Any, Callable, Optional, Union

from . import _native

StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

#: The longest timeout accepted (ten years); None waits forever.
MAX_TIMEOUT = 315_576_000.0

_main_ident = threading.main_thread().ident


def _after_fork() -> None:
    global _main_ident
    _main_ident = threading.main_thread().ident
    _native.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork)


def in_main_thread() -> bool:
    """Whether the caller is Python's main thread (where signal handlers
    run, so waits there must be interruptible)."""
    return threading.get_ident() == _main_ident


def fspath(path: Any, what: str = "path") -> bytes:
    """str, bytes or os.PathLike -> bytes for the native module."""
    if isinstance(path, bytes):
        raw = path
    elif isinstance(path, str):
        raw = os.fsencode(path)
    else:
        try:
            p = os.fspath(path)
        except TypeError:
            raise TypeError(
                f"{what} must be str, bytes or os.PathLike, not {type(path).__name__}"
            ) from None
        raw = os.fsencode(p)
    if not raw:
        raise ValueError(f"{what} is empty")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL byte")
    return raw


def timeout(value: Any, what: str = "timeout") -> Optional[float]:
    """None, or a finite, non-negative, not absurd number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Decimal, Fraction and numpy numbers convert; str and bool do not.
        if isinstance(value, bool) or not hasattr(value, "__float__") or isinstance(value, (str, bytes)):
            raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    try:
        t = float(value)
    except OverflowError:
        raise ValueError(f"{what} is too large (at most ten years); use None to wait forever") from None
    if math.isnan(t):
        raise ValueError(f"{what} is NaN")
    if t < 0:
        raise ValueError(f"{what} must not be negative (got {value!r}); use None to wait forever")
    if t > MAX_TIMEOUT:
        raise ValueError(f"{what} of {value!r} seconds is too large (at most ten years); use None to wait forever")
    return t


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, not {type(value).__name__}")
    return value


def file_mode(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"mode must be an int such as 0o644, not {type(value).__name__}")
    if not 0 <= value <= 0o7777:
        raise ValueError(f"mode {value!r} is not a permission mask (0 to 0o7777)")
    return value


def owner() -> Any:
    """Who an acquisition belongs to: the asyncio task when called from
    one, else the thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    if task is not None:
        return task
    return threading.get_ident()


async def await_native(start: Callable[[Callable[[bool, Any], None]], Any]) -> Any:
    """Runs a native asyncio acquisition: ``start(callback)`` returns a
    handle at once (the lock was free) or an ``AsyncAcquisition`` that
    later calls ``callback(ok, value)`` from another thread. Cancelling the
    awaiting task cancels the acquisition; one that completed in the same
    instant is released, so a cancelled acquisition never leaves anything
    held. Nothing polls: the wait happens in the kernel, watched by the
    runtime thread."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[Any]" = loop.create_future()
    exited: "asyncio.Future[None]" = loop.create_future()

    def settle(ok: Optional[bool], value: Any) -> None:
        if ok is None:  # the acquisition is gone and holds nothing more
            if not exited.done():
                exited.set_result(None)
            return
        if fut.done():
            if ok:
                value.release()
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def callback(ok: Optional[bool], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed
            if ok:
                value.release()

    pending = start(callback)
    if not isinstance(pending, _native.AsyncAcquisition):
        return pending
    try:
        return await fut
    except BaseException:
        # Cancelled (or the task is being torn down): stop the acquisition,
        # and wait (bounded) until it is gone, so that nothing it got is
        # still held when the cancellation propagates. If it had already
        # finished, `settle` releases what it got.
        pending.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(exited), 5)
        except BaseException:
            pass
        raise
