"""holdfast: processes coordinating around files, done right.

Locks that wait in the kernel (not in a sleep loop), exclude threads and
processes alike, and tell you who is in the way::

    import holdfast

    with holdfast.Lock("/tmp/app.lock", timeout=5) as lock:
        ...                      # exclusive; lock.token is a fencing token

    try:
        holdfast.Lock("/tmp/app.lock").acquire(blocking=False)
    except holdfast.WouldBlock as e:
        print(e)                 # "... held by pid 4242 (python3 app.py) ..."

- :class:`Lock`: kernel locks (flock, or OFD fcntl locks), exclusive or
  shared, fencing tokens, holders.
- :class:`LockFile`: lock files in flufl.lock / lockfile / filelock formats.
- :class:`FifoLock`, :class:`Semaphore`: fair queueing, N holders.
- :class:`PhaseRunner`, :class:`Phase`, :func:`once`: setup steps with
  durable markers (phaselock-compatible) and run-once.
- :func:`status`, :func:`inspect`: who holds what, without locking.
- asyncio: ``async with`` and ``await x.acquire_async()`` on every
  primitive, cancellation-safe.
"""

from __future__ import annotations

import os
from typing import Union

from . import _native
from ._errors import (
    ActionFailed,
    AlreadyHeld,
    BackendError,
    CorruptError,
    Error,
    InvalidInput,
    LeaderFailed,
    LockFileNotFoundError,
    LockIOError,
    LockIsADirectoryError,
    LockLost,
    LockNotADirectoryError,
    LockPermissionError,
    SymlinkError,
    Timeout,
    UnsupportedError,
    WouldBlock,
)
from ._lock import FifoLock, Lock, LockFile, Semaphore
from ._phase import Phase, PhaseRunner, once
from ._types import Holder, LockStatus, OnceResult, PhaseContext, RunReport
from ._util import StrPath, fspath as _fspath

__version__: str = _native.__version__

__all__ = [
    "Lock",
    "LockFile",
    "FifoLock",
    "Semaphore",
    "Phase",
    "PhaseRunner",
    "PhaseContext",
    "RunReport",
    "once",
    "OnceResult",
    "status",
    "inspect",
    "Holder",
    "LockStatus",
    "Error",
    "WouldBlock",
    "Timeout",
    "AlreadyHeld",
    "SymlinkError",
    "LockIOError",
    "LockFileNotFoundError",
    "LockPermissionError",
    "LockIsADirectoryError",
    "LockNotADirectoryError",
    "CorruptError",
    "UnsupportedError",
    "InvalidInput",
    "BackendError",
    "LockLost",
    "LeaderFailed",
    "ActionFailed",
    "__version__",
]


def status(path: StrPath) -> LockStatus:
    """Whether the kernel lock at ``path`` is held and by whom, without
    locking it, creating it or following a symlink."""
    return LockStatus._from_dict(_native.status(_fspath(path)))


def inspect(path: StrPath) -> LockStatus:
    """Whatever lock is at ``path``: a lock file of any protocol and format
    (holder, lease, stale verdict), else the kernel lock as :func:`status`."""
    return LockStatus._from_dict(_native.inspect(_fspath(path)))
