"""lockfile's ``SymlinkLockFile``: here a link lock on the same
``<abspath>.lock`` name, so it still excludes lockfile's symlink locks
(see :mod:`holdfast.compat.lockfile`)."""

from __future__ import absolute_import

from . import AlreadyLocked, LockBase, LockTimeout, NotLocked, NotMyLock, _HoldfastLock

__all__ = ["SymlinkLockFile", "LockBase", "NotLocked", "NotMyLock", "LockTimeout", "AlreadyLocked"]


class SymlinkLockFile(_HoldfastLock):
    """Lock access to a file; lockfile made ``<abspath>.lock`` a symlink,
    holdfast makes it a hard link to a claim (the same name, so the two
    exclude each other)."""

    _protocol = "link"
