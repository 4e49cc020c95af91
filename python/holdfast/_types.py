"""Value types: holders, status, phase reports and contexts."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Holder", "LockStatus", "RunReport", "PhaseContext", "OnceResult"]


def _time(t: Optional[float]) -> Optional[_dt.datetime]:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as far as can be told (holder record checked
    against the kernel's lock table, or the kernel and ``/proc`` alone)."""

    pid: Optional[int]
    command: Optional[str]
    host: Optional[str]
    uid: Optional[int]
    #: When it took the lock (from a holder record), in UTC.
    since: Optional[_dt.datetime]
    #: "exclusive" or "shared", when known.
    mode: Optional[str]
    #: The fencing token of its acquisition (from a holder record).
    token: Optional[int]
    #: Whether the holder is this very process.
    this_process: bool
    #: "record", "kernel" or "unverified": where the facts come from.
    source: str
    description: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.description or f"pid {self.pid}"

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Holder":
        return cls(
            pid=d.get("pid"),
            command=d.get("command"),
            host=d.get("host"),
            uid=d.get("uid"),
            since=_time(d.get("since")),
            mode=d.get("mode"),
            token=d.get("token"),
            this_process=bool(d.get("this_process")),
            source=d.get("source") or "unknown",
            description=d.get("description") or "",
        )


@dataclass(frozen=True)
class LockStatus:
    """What :func:`holdfast.status` / :func:`holdfast.inspect` found."""

    #: "kernel" (a kernel lock) or "lockfile" (a lock file).
    kind: str
    path: str
    exists: bool
    locked: bool
    #: The strongest mode held, or None when free.
    mode: Optional[str]
    holders: List[Holder]
    #: Kernel locks: the last holder record in the file (even of a holder
    #: that is gone), with the last fencing token issued.
    last_record: Optional[Dict[str, Any]] = None
    #: Lock files: "soft", "link" or "mkdir", and whose format.
    protocol: Optional[str] = None
    compat: Optional[str] = None
    #: Lock files: why the lock is stale (holdfast would take it over).
    stale: Optional[str] = None
    #: Lock files: when the holder's lease ends.
    expires: Optional[_dt.datetime] = None
    #: Lock files: held by this process through a live guard.
    mine: bool = False

    @property
    def holder(self) -> Optional[Holder]:
        """The first holder, if any."""
        return self.holders[0] if self.holders else None

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "LockStatus":
        return cls(
            kind=d["kind"],
            path=os.fsdecode(d["path"]),
            exists=bool(d.get("exists")),
            locked=bool(d.get("locked")),
            mode=d.get("mode"),
            holders=[Holder._from_dict(h) for h in d.get("holders") or []],
            last_record=d.get("last_record"),
            protocol=d.get("protocol"),
            compat=d.get("compat"),
            stale=d.get("stale"),
            expires=_time(d.get("expires")),
            mine=bool(d.get("mine")),
        )


@dataclass(frozen=True)
class RunReport:
    """What :meth:`holdfast.PhaseRunner.run` did (phaselock's
    ``PhaseRunResult`` plus the fencing token)."""

    #: Phases this run executed, in order.
    completed: Tuple[str, ...]
    #: Phases already marked done, in order.
    skipped: Tuple[str, ...]
    xattrs_available: bool
    lock_path: str
    status_paths: Tuple[str, ...]
    #: Whether the lock was taken (False on the all-done fast path).
    locked: bool
    token: Optional[int]


@dataclass(frozen=True)
class PhaseContext:
    """What a phase (or run-once) action is told about its run."""

    #: The phase name (for run-once, the key's file name).
    name: str
    target: str
    lock_path: str
    #: The fencing token of the lock acquisition the action runs under.
    token: Optional[int]
    #: The descriptor of the held lock (to hand to a child process). Do not
    #: close or unlock it.
    lock_fd: int

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "PhaseContext":
        return cls(
            name=d["name"],
            target=os.fsdecode(d["target"]),
            lock_path=os.fsdecode(d["lock_path"]),
            token=d.get("token"),
            lock_fd=d["lock_fd"],
        )


@dataclass(frozen=True)
class OnceResult:
    """What :func:`holdfast.once` found or did."""

    #: Whether this call ran the action.
    ran: bool
    #: The fencing token the action ran under (when it ran).
    token: Optional[int]
    #: This caller took over from a leader that stopped without finishing.
    took_over: bool
    #: This caller waited for the lock first.
    waited: bool

    def __bool__(self) -> bool:
        return self.ran
