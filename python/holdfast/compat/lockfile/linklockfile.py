"""lockfile's ``LinkLockFile`` over holdfast: a claim hard-linked to
``<abspath>.lock`` (see :mod:`holdfast.compat.lockfile`)."""

from __future__ import absolute_import

from . import AlreadyLocked, LockBase, LockFailed, LockTimeout, NotLocked, NotMyLock, _HoldfastLock

__all__ = ["LinkLockFile", "LockBase", "LockFailed", "NotLocked", "NotMyLock", "LockTimeout", "AlreadyLocked"]


class LinkLockFile(_HoldfastLock):
    """Lock access to a file using the atomic property of link(2).

    >>> lock = LinkLockFile('somefile')
    >>> lock = LinkLockFile('somefile', threaded=False)
    """

    _protocol = "link"
