"""filelock's asyncio locks over holdfast: ``async with``, never blocking
the event loop. The wait happens in the kernel (not in an executor thread
that polls); cancelling the awaiting task leaves nothing held."""

from __future__ import annotations

import asyncio

from concurrent import futures
from types import TracebackType
from typing import Any, Callable, Optional, Type

from .. import _core
from ._api import BaseFileLock, SoftFileLock, Timeout, UnixFileLock, _check_blocking

__all__ = [
    "AsyncAcquireReturnProxy",
    "AsyncSoftFileLock",
    "AsyncUnixFileLock",
    "AsyncWindowsFileLock",
    "BaseAsyncFileLock",
]


class AsyncAcquireReturnProxy:
    """A context-aware object that will release the lock file when exiting."""

    def __init__(self, lock: "BaseAsyncFileLock") -> None:
        self.lock = lock

    async def __aenter__(self) -> "BaseAsyncFileLock":
        return self.lock

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc_value: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.lock.release()


class BaseAsyncFileLock(BaseFileLock):
    """Base class for asynchronous file locks (``thread_local=False`` by default)."""

    _default_thread_local = False

    def __init__(self, lock_file: Any, timeout: float = -1, mode: int = -1, thread_local: bool = False, *,
                 blocking: bool = True, is_singleton: bool = False, poll_interval: float = 0.05,
                 lifetime: Optional[float] = None, loop: Optional[asyncio.AbstractEventLoop] = None,
                 run_in_executor: bool = True, executor: Optional[futures.Executor] = None,
                 **options: Any) -> None:
        if thread_local and run_in_executor:
            raise ValueError("run_in_executor is not supported when thread_local is True")
        super().__init__(lock_file, timeout, mode, thread_local, blocking=blocking, is_singleton=is_singleton,
                         poll_interval=poll_interval, lifetime=lifetime, **options)
        self._loop = loop
        self._run_in_executor = run_in_executor
        self._executor = executor

    @property
    def run_in_executor(self) -> bool:
        """Accepted for compatibility: holdfast never needs an executor to wait."""
        return self._run_in_executor

    @property
    def executor(self) -> Optional[futures.Executor]:
        return self._executor

    @executor.setter
    def executor(self, value: Optional[futures.Executor]) -> None:
        self._executor = value

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        return self._loop

    async def acquire(self, timeout: Optional[float] = None, poll_interval: Optional[float] = None, *,  # type: ignore[override]
                      blocking: Optional[bool] = None,
                      cancel_check: Optional[Callable[[], bool]] = None) -> AsyncAcquireReturnProxy:
        """Try to acquire the file lock without blocking the event loop.

        :raises Timeout: if the lock could not be acquired in time"""
        wait, blocking, poll = self._resolve(timeout, poll_interval, None, blocking)
        ctx = self._context
        if ctx.handle is not None:
            ctx.lock_counter += 1
            return AsyncAcquireReturnProxy(lock=self)
        native = self._native()
        try:
            if cancel_check is None:
                handle = await _core.acquire_async(native, wait, blocking)
            else:
                handle = await self._acquire_checking(native, wait, blocking, poll, cancel_check)
        except (_core.Busy + (_core.AlreadyHeld,)) as err:
            raise self._map_busy(err, wait) from err
        if ctx.handle is not None:  # another task of this context got it meanwhile
            handle.release()
            ctx.lock_counter += 1
            return AsyncAcquireReturnProxy(lock=self)
        ctx.handle = handle
        ctx.lock_counter = 1
        self._holds[id(handle)] = handle
        self._run_on_acquired(handle)
        return AsyncAcquireReturnProxy(lock=self)

    async def _acquire_checking(self, native: Any, wait: Optional[float], blocking: bool, poll: float,
                                cancel_check: Callable[[], bool]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        step = max(poll, 0.001)
        while True:
            if cancel_check():
                raise Timeout(self.lock_file)
            left = None if deadline is None else max(0.0, deadline - loop.time())
            this = step if left is None else min(step, left)
            try:
                return await _core.acquire_async(native, this, blocking)
            except _core.Busy:
                if not blocking or (left is not None and left <= this):
                    raise

    async def release(self, force: bool = False) -> None:  # type: ignore[override]
        """Releases the lock once the lock counter reaches 0 (or at once with ``force``)."""
        BaseFileLock.release(self, force)

    def __enter__(self) -> Any:
        raise NotImplementedError(
            "Use `async with`: acquire/release are coroutines and cannot be awaited in a sync context manager.")

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc_value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        raise NotImplementedError(
            "Use `async with`: acquire/release are coroutines and cannot be awaited in a sync context manager.")

    async def __aenter__(self) -> "BaseAsyncFileLock":
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc_value: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.release()


class AsyncUnixFileLock(UnixFileLock, BaseAsyncFileLock):
    """``flock(2)`` on ``lock_file``, awaited without blocking the event loop."""


class AsyncSoftFileLock(SoftFileLock, BaseAsyncFileLock):
    """filelock's soft lock file, awaited without blocking the event loop."""


class AsyncWindowsFileLock(BaseAsyncFileLock):
    """filelock's Windows lock; on other systems it raises as filelock does."""

    def _make_native(self) -> Any:
        raise NotImplementedError("AsyncWindowsFileLock is only available on Windows")

    async def acquire(self, *args: Any, **kwargs: Any) -> AsyncAcquireReturnProxy:  # type: ignore[override]
        raise NotImplementedError("AsyncWindowsFileLock is only available on Windows")


def __dir__() -> "list[str]":
    return list(__all__)


