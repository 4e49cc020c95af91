"""lockfile's ``MkdirLockFile`` over holdfast: the directory
``<abspath>.lock`` (see :mod:`holdfast.compat.lockfile`)."""

from __future__ import absolute_import

import os

from . import AlreadyLocked, LockBase, LockFailed, LockTimeout, NotLocked, NotMyLock, _HoldfastLock

__all__ = ["MkdirLockFile", "LockBase", "LockFailed", "NotLocked", "NotMyLock", "LockTimeout", "AlreadyLocked"]


class MkdirLockFile(_HoldfastLock):
    """Lock file by creating a directory."""

    _protocol = "mkdir"

    def __init__(self, path: str, threaded: bool = True, timeout: "float | None" = None) -> None:
        _HoldfastLock.__init__(self, path, threaded, timeout)
        self.unique_name = os.path.join(self.lock_file, "%s.%s%s" % (self.hostname, self.tname, self.pid))
