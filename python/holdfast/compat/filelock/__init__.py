"""``filelock`` (4.x, API compatible with 3.x) over holdfast.

Change ``import filelock`` to ``from holdfast.compat import filelock`` (or
call ``holdfast.compat.install("filelock")``) and keep sharing lock paths
with processes that still run filelock:

- :class:`FileLock` (= :class:`UnixFileLock`) is ``flock(2)`` on exactly
  ``lock_file``, never deleted, as filelock's; the two exclude each other.
- :class:`SoftFileLock` writes filelock's record (``<pid>\\n<host>\\n<start
  token>\\n``) with ``O_CREAT|O_EXCL``; a lock of a dead holder on this host
  is taken over, as filelock 4 does.

Same names, signatures, defaults, ``Timeout`` (a ``TimeoutError`` with
``lock_file``), reentrancy (``lock_counter``), ``thread_local``,
``is_singleton``, ``mode``, ``blocking``, context managers and decorators,
and the asyncio classes (also in :mod:`holdfast.compat.filelock.asyncio`).

What is better than the original (the API is unchanged):

- **No polling.** A waiter sleeps in the kernel (``flock``), or on inotify
  for soft locks, and wakes when the holder lets go: ``poll_interval`` is
  accepted and only paces a ``cancel_check`` callback. Handoff latency is
  the kernel's, not up to one ``poll_interval`` (filelock: 50 ms).
- **Timeout names the holder** (pid and command) when it is known.
- **A live soft-lock holder is never robbed**: filelock's ``lifetime`` lets
  a waiter delete the lock of a holder that is still working; here the
  holder refreshes the file while it holds it, so only a dead (or
  unreachable, lease expired) holder loses it.
- **asyncio waits without an executor thread** and a cancelled
  ``acquire()`` leaves nothing held.

Not reproduced: filelock's read-write locks (``ReadWriteLock``,
``SoftReadWriteLock``), leases (``SoftFileLease``), ``StrictSoftFileLock``,
``MarkerSoftFileLock`` and ``lock_descriptor``; use :class:`holdfast.Lock`
(``shared=True``) and :class:`holdfast.LockFile` for those needs.
"""

from __future__ import annotations

from . import asyncio
from ._api import (
    AcquireReturnProxy,
    BaseFileLock,
    SoftFileLock,
    Timeout,
    UnixFileLock,
    WindowsFileLock,
)
from .asyncio import (
    AsyncAcquireReturnProxy,
    AsyncSoftFileLock,
    AsyncUnixFileLock,
    AsyncWindowsFileLock,
    BaseAsyncFileLock,
)
from .version import version

__version__: str = version

#: filelock's module constant: whether fcntl (flock) is available here.
has_fcntl: bool = True

#: Alias for the lock which should be used for the current platform.
FileLock = UnixFileLock
#: Alias for the async lock which should be used for the current platform.
AsyncFileLock = AsyncUnixFileLock

__all__ = [
    "AcquireReturnProxy",
    "AsyncAcquireReturnProxy",
    "AsyncFileLock",
    "AsyncSoftFileLock",
    "AsyncUnixFileLock",
    "AsyncWindowsFileLock",
    "BaseAsyncFileLock",
    "BaseFileLock",
    "FileLock",
    "SoftFileLock",
    "Timeout",
    "UnixFileLock",
    "WindowsFileLock",
    "__version__",
    "asyncio",
    "has_fcntl",
]
