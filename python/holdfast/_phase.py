"""Setup phases with durable markers, and run-once."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List, Optional, Union

from . import _native, _util
from ._types import OnceResult, PhaseContext, RunReport
from ._util import StrPath

__all__ = ["Phase", "PhaseRunner", "once"]

Action = Callable[[PhaseContext], Any]


class Phase:
    """One named, idempotent setup step. ``action(ctx)`` runs under the
    target's lock when the phase is not yet marked done; if it returns,
    the marker is written durably; if it raises, nothing is marked and the
    exception propagates unchanged."""

    __slots__ = ("name", "action", "attr_name", "attr_value")

    def __init__(
        self,
        name: str,
        action: Action,
        *,
        attr_name: Optional[str] = None,
        attr_value: Union[bytes, str] = b"1",
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a phase name must be a str, not {type(name).__name__}")
        if not callable(action):
            raise TypeError(f"the action of phase {name!r} must be callable, not {type(action).__name__}")
        if attr_name is not None and not isinstance(attr_name, str):
            raise TypeError(f"attr_name must be a str or None, not {type(attr_name).__name__}")
        if isinstance(attr_value, str):
            attr_value = attr_value.encode()
        if not isinstance(attr_value, bytes):
            raise TypeError(f"attr_value must be bytes or str, not {type(attr_value).__name__}")
        self.name = name
        self.action = action
        self.attr_name = attr_name
        self.attr_value = attr_value

    def __repr__(self) -> str:
        return f"Phase({self.name!r})"


def _wrap(action: Action) -> Callable[[Any], Any]:
    def call(d: Any) -> Any:
        return action(PhaseContext._from_dict(d))

    return call


class PhaseRunner:
    """Runs ordered, idempotent phases on a target, once each across
    processes and crashes, with phaselock 1.1.0's lock (``TARGET.lock``)
    and markers (xattrs ``user.phaselock.NAME`` or ``TARGET.status``), so
    phaselock and holdfast see each other's work.

    ::

        runner = holdfast.PhaseRunner("/srv/app.db", timeout=60)
        report = runner.run([
            holdfast.Phase("schema", lambda ctx: create_schema(ctx.token)),
            holdfast.Phase("seed", seed),
        ])
        print(report.completed, report.skipped)
    """

    def __init__(
        self,
        target: StrPath,
        *,
        namespace: Optional[str] = None,
        lock_suffix: Optional[StrPath] = None,
        status_suffix: Optional[StrPath] = None,
        timeout: Optional[float] = None,
        blocking: bool = True,
        xattrs: str = "auto",
        strict: bool = False,
        follow_symlinks: bool = False,
        lock_mode: int = 0o644,
    ) -> None:
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str or None, not {type(namespace).__name__}")
        if not isinstance(xattrs, str):
            raise TypeError(f"xattrs must be \"auto\", \"on\" or \"off\", not {type(xattrs).__name__}")
        self._native = _native.NativePhaseRunner(
            _util.fspath(target, "target"),
            namespace=namespace,
            lock_suffix=None if lock_suffix is None else os.fsencode(lock_suffix),
            status_suffix=None if status_suffix is None else os.fsencode(status_suffix),
            timeout=_util.timeout(timeout),
            blocking=_util.flag(blocking, "blocking"),
            xattrs=xattrs,
            strict=_util.flag(strict, "strict"),
            follow_symlinks=_util.flag(follow_symlinks, "follow_symlinks"),
            lock_mode=_util.file_mode(lock_mode),
        )
        self.target = os.fsdecode(_util.fspath(target, "target"))

    @property
    def lock_path(self) -> str:
        return os.fsdecode(self._native.lock_path)

    @property
    def status_path(self) -> str:
        return os.fsdecode(self._native.status_path)

    def attr_key(self, name: str) -> str:
        """The xattr name of a phase's marker."""
        return str(self._native.attr_key(name))

    def run(self, phases: Iterable[Phase]) -> RunReport:
        """Runs the phases not yet marked done, in order, under the lock;
        returns which ran and which were skipped."""
        specs = []
        for p in phases:
            if not isinstance(p, Phase):
                raise TypeError(f"run() takes Phase objects, not {type(p).__name__}")
            specs.append((p.name, _wrap(p.action), p.attr_name, p.attr_value))
        d = self._native.run(specs, _util.in_main_thread())
        return RunReport(
            completed=tuple(d["completed"]),
            skipped=tuple(d["skipped"]),
            xattrs_available=bool(d["xattrs_available"]),
            lock_path=os.fsdecode(d["lock_path"]),
            status_paths=tuple(os.fsdecode(p) for p in d["status_paths"]),
            locked=bool(d["locked"]),
            token=d["token"],
        )

    def is_done(self, name: str, attr_name: Optional[str] = None) -> bool:
        """Whether phase ``name`` is marked done."""
        return self._native.is_marked(name, attr_name) is not None

    def done(self) -> List[str]:
        """The phases marked done (both marker stores)."""
        return list(self._native.markers())

    def unmark(self, name: str, attr_name: Optional[str] = None) -> bool:
        """Removes one phase's marker, so the next run does it again."""
        return bool(self._native.unmark(name, attr_name))

    def reset(self) -> List[str]:
        """Removes every marker (under the lock); returns what was marked."""
        return list(self._native.reset())


def once(
    key: StrPath,
    fn: Action,
    *,
    timeout: Optional[float] = None,
    blocking: bool = True,
    on_leader_failure: str = "retry",
) -> OnceResult:
    """Runs ``fn(ctx)`` once for ``key`` across threads, processes and
    crashes: the key file exists once it has returned. Callers arriving
    meanwhile wait, then return without running it. If ``fn`` raises, the
    key stays absent and the exception propagates; a waiting caller then
    runs it itself (``on_leader_failure="retry"``) or raises
    :class:`LeaderFailed` (``"propagate"``)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    if not isinstance(on_leader_failure, str):
        raise TypeError("on_leader_failure must be \"retry\" or \"propagate\"")
    d = _native.once(
        _util.fspath(key, "key"),
        _wrap(fn),
        timeout=_util.timeout(timeout),
        blocking=_util.flag(blocking, "blocking"),
        on_leader_failure=on_leader_failure,
        interruptible=_util.in_main_thread(),
    )
    return OnceResult(ran=bool(d["ran"]), token=d.get("token"), took_over=bool(d.get("took_over")), waited=bool(d.get("waited")))
