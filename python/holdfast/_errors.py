"""The exceptions of holdfast.

Every one is a :class:`holdfast.Error`, carries ``.path`` (the lock or
target it is about) and ``.holders`` (who was in the way, for contention),
and its message is the library's, naming the holder. They also subclass
the matching builtins, so plain ``except TimeoutError`` /
``except BlockingIOError`` / ``except FileNotFoundError`` work.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Dict, List, Optional, Sequence, Type, cast

from ._types import Holder

__all__ = [
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
]


class Error(Exception):
    """Base class of every holdfast error."""

    #: The lock file, phase target or run-once key the error is about.
    path: Optional[str] = None
    #: Who held the lock (contention errors); empty otherwise.
    holders: List[Holder]
    #: The library's message (also ``str(err)``).
    message: str = ""

    def __str__(self) -> str:
        return self.message or super().__str__()


class WouldBlock(Error, BlockingIOError):
    """A non-blocking attempt found the lock held (``errno`` EAGAIN)."""

    #: "exclusive" or "shared": the mode asked for.
    mode: Optional[str] = None


class Timeout(Error, TimeoutError):
    """The wait ran out of time (``errno`` ETIMEDOUT)."""

    mode: Optional[str] = None
    #: Seconds waited.
    waited: Optional[float] = None


class AlreadyHeld(Error, RuntimeError):
    """This thread or task already holds the lock and it is not re-entrant:
    waiting for it again would deadlock, so holdfast refuses."""


class SymlinkError(Error, OSError):
    """The path is a symbolic link and following it was not allowed
    (``errno`` ELOOP)."""


class LockIOError(Error, OSError):
    """A system call failed; ``errno``, ``strerror`` and ``filename`` are
    set. Subclasses match the builtin ``OSError`` subclasses."""

    #: What holdfast was doing ("open", "lock", ...).
    op: Optional[str] = None


class LockFileNotFoundError(LockIOError, FileNotFoundError):
    """ENOENT: for example a missing parent directory."""


class LockPermissionError(LockIOError, PermissionError):
    """EACCES / EPERM."""


class LockIsADirectoryError(LockIOError, IsADirectoryError):
    """EISDIR."""


class LockNotADirectoryError(LockIOError, NotADirectoryError):
    """ENOTDIR."""


class CorruptError(Error, ValueError):
    """A file holdfast reads (status file, record) cannot be trusted."""


class UnsupportedError(Error, OSError):
    """Not possible on this platform or file (``errno`` EOPNOTSUPP)."""


class InvalidInput(Error, ValueError):
    """The request cannot be acted on (an empty path, a bad phase name...)."""


class BackendError(Error, OSError):
    """A backend that is not a file (etcd, PostgreSQL) failed."""

    op: Optional[str] = None


class LockLost(Error):
    """A lock file this process held was broken or its lease ran out."""


class LeaderFailed(Error):
    """Run-once with ``on_leader_failure="propagate"``: the process running
    the action stopped without completing it."""

    leader: List[Holder]


class ActionFailed(Error):
    """A phase or run-once action failed (actions' own exceptions are
    re-raised unchanged; this is for failures the library reports)."""

    name: Optional[str] = None


_OS_BY_ERRNO: Dict[int, Type[Error]] = {
    _errno.ENOENT: LockFileNotFoundError,
    _errno.EACCES: LockPermissionError,
    _errno.EPERM: LockPermissionError,
    _errno.EISDIR: LockIsADirectoryError,
    _errno.ENOTDIR: LockNotADirectoryError,
}

_ERRNO_OF = {
    "WouldBlock": _errno.EAGAIN,
    "Timeout": _errno.ETIMEDOUT,
    "SymlinkError": _errno.ELOOP,
    "UnsupportedError": _errno.EOPNOTSUPP,
}


def _from_native(
    kind: str,
    message: str,
    path: bytes,
    holders: Sequence[Dict[str, Any]],
    errno: Optional[int],
    extra: Dict[str, Any],
) -> Error:
    """Builds the exception for a library error (called by the native
    module)."""
    fspath = os.fsdecode(path)
    cls: Type[Error] = globals().get(kind, Error)
    if kind == "LockIOError" and errno is not None:
        cls = _OS_BY_ERRNO.get(errno, LockIOError)
    exc: Error
    if issubclass(cls, OSError):
        code = errno if errno is not None else _ERRNO_OF.get(kind)
        strerror = extra.get("strerror") or (os.strerror(code) if code else message)
        exc = cast(Any, cls)(code, strerror, fspath)
    else:
        exc = cls(message)
    exc.message = message
    exc.path = fspath
    exc.holders = [Holder._from_dict(h) for h in holders]
    for key in ("mode", "waited", "op", "name"):
        if key in extra:
            setattr(exc, key, extra[key])
    if "leader" in extra:
        exc.leader = [Holder._from_dict(h) for h in extra["leader"]]  # type: ignore[attr-defined]
    return exc


def _already_held(path: str) -> AlreadyHeld:
    exc = AlreadyHeld(path)
    exc.message = (
        f"{path} is already locked by this thread or task; waiting for it again would "
        "deadlock (release it first, or open the lock with reentrant=True)"
    )
    exc.path = path
    exc.holders = []
    return exc
