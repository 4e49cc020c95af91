"""lockfile's ``SQLiteLockFile``: lockfile keeps its lock table in a
per-process temporary database, so it never excluded another process.
Here it is a link lock on ``<abspath>.lock``, which does (see
:mod:`holdfast.compat.lockfile`)."""

from __future__ import absolute_import

from . import AlreadyLocked, LockBase, LockTimeout, NotLocked, NotMyLock, _HoldfastLock

__all__ = ["SQLiteLockFile", "LockBase", "NotLocked", "NotMyLock", "LockTimeout", "AlreadyLocked"]


class SQLiteLockFile(_HoldfastLock):
    """Demonstrate SQL-based locking (here: a cross-process link lock)."""

    testdb = None
    _protocol = "link"
