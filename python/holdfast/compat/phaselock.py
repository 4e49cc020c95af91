"""``phaselock`` 1.1.0 over holdfast: ordered setup phases with durable
completion markers, and an advisory file lock.

Change ``from phaselock import ...`` to ``from holdfast.compat.phaselock
import ...``. Same names (``__all__``), signatures, defaults, exceptions
(``PhaseLockTimeout(TimeoutError)`` with ``.cause``,
``PhaseLockUnavailable``, ``PhaseLockCancelled``), the same on-disk
protocol as phaselock **1.1.0** (not the 1.0 naming its README still shows):

- the lock is ``flock(2)`` on ``<target><lock_suffix>`` (``app.db.lock``),
  never deleted; phaselock processes and this module exclude each other;
- markers are the xattr ``<namespace>.<attr_name or name>`` on the target
  (``user.phaselock.schema-v1``), or, in status mode (no xattrs, or
  ``PHASELOCK_ENABLE_XATTRS=0``), a line per phase in
  ``<target><status_suffix>`` replaced atomically (temp file, fsync,
  rename, directory fsync) while the lock is held. Markers written by either
  side are read by the other.

What is better than the original (the API is unchanged):

- **Waiting happens in the kernel**, not in a ``retry_delay`` sleep loop: a
  waiter wakes the moment the holder releases. ``retry_delay`` is accepted;
  it only paces the ``should_cancel`` / ``should_stop_waiting`` callbacks.
- **A phase never reruns forever**: phaselock writes a marker to the status
  file when ``setxattr`` fails (missing target, a filesystem refusing the
  xattr) but in xattr mode never reads the status file, so the phase runs
  again on every call; it also ignores the markers of a process running in
  the other mode. Here a phase counts as done when *either* store says so.
- **One bad line does not discard every marker**: phaselock treats a status
  file with any invalid line (or over 64 KiB) as empty and reruns
  everything; here the valid lines still count (and a rewrite drops the bad
  ones).
- **A second lock in the same thread fails at once** with
  :class:`PhaseLockTimeout` saying so, instead of waiting out the timeout.
- ``AdvisoryFileLock`` also accepts a ``str`` path and the defaults its
  README documents (``timeout=10.0``, ``retry_delay=0.05``).
- :class:`PhaseLockTimeout` names the holder (pid, command) when known.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Iterator, List, Optional, Set, Tuple, Union

from . import _core

__version__ = "1.1.0"

PHASELOCK_ENABLE_XATTRS = "PHASELOCK_ENABLE_XATTRS"
_XATTR_ENV_ENABLED = {"1", "true", "yes", "on", "xattr", "xattrs"}
_XATTR_ENV_DISABLED = {"0", "false", "no", "off", "fallback", "status", "none"}
_MAX_STATUS_BYTES = 64 * 1024
_MISSING_XATTR_ERRNOS = {e for e in (getattr(errno, "ENODATA", None), getattr(errno, "ENOATTR", None)) if e}

__all__ = [
    "PHASELOCK_ENABLE_XATTRS",
    "AdvisoryFileLock",
    "Phase",
    "PhaseLockCancelled",
    "PhaseLockService",
    "PhaseLockTimeout",
    "PhaseLockUnavailable",
    "PhaseRunResult",
    "__version__",
]


class PhaseLockTimeout(TimeoutError):
    """Raised when the phase lock cannot be acquired before the timeout.

    ``cause`` is set only when opening the lock sidecar itself failed."""

    def __init__(self, message: str, *, cause: Optional[OSError] = None) -> None:
        super().__init__(message)
        self.cause = cause


class PhaseLockUnavailable(RuntimeError):
    """Raised when this platform has no supported advisory file lock primitive."""


class PhaseLockCancelled(RuntimeError):
    """Raised when a caller cancels an advisory-lock wait."""


def _validate_phase_name(phase_name: str) -> None:
    if not phase_name or "\x00" in phase_name or "\n" in phase_name or "\r" in phase_name:
        raise ValueError("phase names must be non-empty and contain no NUL or newlines")


def _valid_name(name: str) -> bool:
    return bool(name) and "\x00" not in name and "\n" not in name and "\r" not in name


@dataclass(frozen=True)
class Phase:
    """One ordered setup phase. The action must be idempotent; the marker
    is written only after the action returns successfully."""

    name: str
    action: Callable[[], None]
    attr_name: Optional[str] = None
    attr_value: bytes = b"1"


@dataclass(frozen=True)
class PhaseRunResult:
    """Result returned by :meth:`PhaseLockService.run_phases`."""

    completed: Tuple[str, ...]
    skipped: Tuple[str, ...]
    xattrs_available: bool
    lock_path: Path
    status_paths: Tuple[Path, ...] = ()


class _AdvisoryLock:
    """flock on an exact path, waited on in the kernel."""

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, timeout: float = 10.0, retry_delay: float = 0.05,
                 create_parent: bool = True) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.create_parent = create_parent
        self._handle: Optional[object] = None
        self._locked = False

    def acquire(self, *, should_stop_waiting: Optional[Callable[[], bool]] = None,
                diagnostics: Optional[Callable[[], str]] = None) -> bool:
        """Takes the lock; False if ``should_stop_waiting()`` said to stop first.

        Raises :class:`PhaseLockTimeout` after ``timeout`` seconds, and
        ``RuntimeError`` if this object already holds it."""
        if self._locked:
            raise RuntimeError(
                "AdvisoryFileLock does not support re-entrant acquisition. "
                "Create a new lock instance or release before re-acquiring."
            )
        start = time.monotonic()
        try:
            if self.create_parent:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            native = _core.kernel_lock(self.path, mode=0o666, record=False)
        except OSError as exc:
            raise PhaseLockTimeout(self._timeout_message(start, exc, diagnostics), cause=exc) from None
        timeout = _core.seconds(self.timeout)
        try:
            if should_stop_waiting is None:
                handle = _core.acquire(native, timeout)
            else:
                handle = _core.acquire_sliced(native, timeout, self.retry_delay, should_stop_waiting)
                if handle is None:
                    return False
        except _core.AlreadyHeld as err:
            raise PhaseLockTimeout(self._timeout_message(start, None, diagnostics, str(err))) from None
        except _core.Busy as err:
            holders = getattr(err, "holders", None) or []
            held_by = f"held_by={holders[0].description}" if holders else None
            raise PhaseLockTimeout(self._timeout_message(start, None, diagnostics, held_by)) from None
        except OSError as exc:
            raise PhaseLockTimeout(self._timeout_message(start, exc, diagnostics), cause=exc) from None
        self._prepare_lock_file()
        self._handle = handle
        self._locked = True
        return True

    def _prepare_lock_file(self) -> None:
        # phaselock keeps one byte in the file for Windows byte-range locking; do the same.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_size == 0:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
                try:
                    if os.fstat(fd).st_size == 0:
                        os.write(fd, b"\0")
                finally:
                    os.close(fd)

    def _timeout_message(self, start: float, last_error: Optional[OSError],
                         diagnostics: Optional[Callable[[], str]], extra: Optional[str] = None) -> str:
        parts = [
            f"Timeout waiting for phase lock: {self.path}",
            f"lock_path={self.path}",
            f"timeout={float(self.timeout):.3f}s",
            f"elapsed={time.monotonic() - start:.3f}s",
        ]
        try:
            st = self.path.stat()
        except OSError as exc:
            parts.append(f"lock_stat_error={exc!r}")
        else:
            parts += ["lock_exists=True", f"lock_age={max(0.0, time.time() - st.st_mtime):.3f}s",
                      f"lock_size={st.st_size}"]
        if extra:
            parts.append(extra)
        if last_error is not None:
            parts.append(f"last_error={last_error!r}")
        if diagnostics is not None:
            with contextlib.suppress(Exception):
                detail = diagnostics()
                if detail:
                    parts.append(detail)
        return "; ".join(parts)

    def release(self) -> None:
        """Releases the lock (no-op if not held)."""
        handle, self._handle, self._locked = self._handle, None, False
        if handle is not None:
            handle.release()  # type: ignore[attr-defined]


class AdvisoryFileLock(_AdvisoryLock):
    """Exact-path advisory lock (``flock``) for an already-built lock sidecar path.

    ``AdvisoryFileLock(path, *, timeout=10.0, retry_delay=0.05, create_parent=True)``;
    context manager, or :meth:`acquire` / :meth:`release`."""

    @property
    def locked(self) -> bool:
        """Whether this object currently holds the advisory lock."""
        return self._locked

    def __enter__(self) -> "AdvisoryFileLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.release()


def _xattr_env_mode() -> Optional[bool]:
    raw = os.environ.get(PHASELOCK_ENABLE_XATTRS)
    if raw is None:
        return True
    value = raw.strip().lower()
    if value in ("", "auto") or value in _XATTR_ENV_ENABLED:
        return True
    if value in _XATTR_ENV_DISABLED:
        return False
    return None


class PhaseLockService:
    """Coordinate ordered setup phases with a lock file and completion markers."""

    def __init__(self, target: Union[str, "os.PathLike[str]"], *, namespace: str = "user.phaselock",
                 lock_suffix: str = ".lock", status_suffix: str = ".status", timeout: float = 10.0,
                 retry_delay: float = 0.05, use_xattrs: Optional[bool] = None,
                 strict_marker_locking: Optional[bool] = None) -> None:
        self.target = Path(target)
        self.namespace = namespace.strip(".")
        self.lock_path = Path(str(self.target) + lock_suffix)
        self.status_base_path = Path(str(self.target) + status_suffix)
        self.timeout = timeout
        self.retry_delay = retry_delay
        self._use_xattrs = use_xattrs
        self._strict_marker_locking = (os.name == "nt") if strict_marker_locking is None else strict_marker_locking
        self._xattrs_available: Optional[bool] = None

    # --- modes -----------------------------------------------------------------------------
    @property
    def strict_marker_locking(self) -> bool:
        """Whether markers are trusted only after acquiring the lock."""
        return self._strict_marker_locking

    @property
    def xattrs_available(self) -> bool:
        """Whether xattrs have appeared usable for this service."""
        if self._xattrs_disabled():
            return False
        if self._xattrs_available is not None:
            return self._xattrs_available
        return hasattr(os, "getxattr")

    def _xattrs_disabled(self) -> bool:
        if self._use_xattrs is not None:
            return self._use_xattrs is False
        return _xattr_env_mode() is False

    def _should_use_xattrs(self) -> bool:
        if self._xattrs_disabled():
            self._xattrs_available = False
            return False
        if not self.xattrs_available:
            return False
        self._get_xattr(self.attr_key("__phaselock_probe__"))
        return self.xattrs_available

    # --- markers ---------------------------------------------------------------------------
    def attr_key(self, phase_name: str, attr_name: Optional[str] = None) -> str:
        """The xattr key for a phase: ``<namespace>.<attr_name or phase_name>``."""
        raw = attr_name or phase_name
        _validate_phase_name(raw)
        return f"{self.namespace}.{raw}" if self.namespace else raw

    def _get_xattr(self, key: str) -> Optional[bytes]:
        if self._xattrs_disabled() or not hasattr(os, "getxattr"):
            self._xattrs_available = False
            return None
        try:
            value = os.getxattr(self.target, key)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._xattrs_available = exc.errno in _MISSING_XATTR_ERRNOS
            return None
        self._xattrs_available = True
        return bytes(value)

    def _set_xattr(self, key: str, value: bytes) -> bool:
        if self._xattrs_disabled() or not hasattr(os, "setxattr"):
            self._xattrs_available = False
            return False
        try:
            os.setxattr(self.target, key, bytes(value))
        except OSError:
            return False
        self._xattrs_available = True
        return True

    def _has_xattr_marker(self, name: str, attr_name: Optional[str]) -> bool:
        if self._xattrs_disabled():
            return False
        return self._get_xattr(self.attr_key(name, attr_name)) is not None

    def has_phase(self, phase_name: str, *, attr_name: Optional[str] = None) -> bool:
        """True when the phase's completion marker is present (in either store)."""
        if self._has_xattr_marker(phase_name, attr_name):
            return True
        return phase_name in self._read_status_entries()[1]

    def mark_phase(self, phase_name: str, *, attr_name: Optional[str] = None, value: bytes = b"1") -> bool:
        """Sets the phase's completion xattr; False when xattrs are
        unavailable or rejected (phase actions stay idempotent)."""
        return self._set_xattr(self.attr_key(phase_name, attr_name), value)

    def get_xattr_value(self, phase_name: str, *, attr_name: Optional[str] = None) -> Optional[bytes]:
        """One xattr value, or ``None`` when it is absent or unavailable."""
        return self._get_xattr(self.attr_key(phase_name, attr_name))

    def _is_marked(self, phase: Phase, status: Set[str]) -> bool:
        return phase.name in status or self._has_xattr_marker(phase.name, phase.attr_name)

    def _all_marked(self, phases: Tuple[Phase, ...]) -> bool:
        status = self._read_status_entries()[1]
        return all(self._is_marked(p, status) for p in phases)

    # --- status file -----------------------------------------------------------------------
    def _read_status_entries(self) -> Tuple[List[str], Set[str]]:
        try:
            st = self.status_base_path.stat()
            if st.st_size > 16 * _MAX_STATUS_BYTES:
                return [], set()
            text = self.status_base_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return [], set()
        order: List[str] = []
        seen: Set[str] = set()
        for line in text.split("\n"):
            if _valid_name(line) and "\ufffd" not in line and line not in seen:
                seen.add(line)
                order.append(line)
        return order, seen

    def _write_status_phases(self, phases: Iterable[str]) -> None:
        order: List[str] = []
        for name in phases:
            _validate_phase_name(name)
            if name not in order:
                order.append(name)
        self.status_base_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_base_path.with_name(f"{self.status_base_path.name}.tmp.{os.getpid()}.{time.time_ns()}")
        data = "".join(f"{n}\n" for n in order).encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            try:
                os.write(fd, data)
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.status_base_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(self.status_base_path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _mark_status_phase(self, name: str) -> None:
        order = self._read_status_entries()[0]
        if name not in order:
            order.append(name)
        self._write_status_phases(order)

    def _status_paths_for(self) -> Tuple[Path, ...]:
        return (self.status_base_path,) if self.status_base_path.exists() else ()

    def discard_status_markers(self) -> None:
        """Removes the fallback status file and any leftover temp files (never
        the xattrs or the lock file)."""
        paths = [self.status_base_path]
        with contextlib.suppress(OSError):
            paths += list(self.status_base_path.parent.glob(f"{self.status_base_path.name}.tmp.*"))
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink()

    # --- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the advisory setup lock."""
        lock = _AdvisoryLock(self.lock_path, timeout=self.timeout, retry_delay=self.retry_delay)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _result(self, phases: Tuple[Phase, ...], completed: Iterable[str], skipped: Iterable[str]) -> PhaseRunResult:
        using = self._should_use_xattrs()
        return PhaseRunResult(
            completed=tuple(completed),
            skipped=tuple(skipped),
            xattrs_available=self.xattrs_available,
            lock_path=self.lock_path,
            status_paths=() if using else self._status_paths_for(),
        )

    def run_phases(self, phases: Iterable[Phase], *, should_cancel: Optional[Callable[[], bool]] = None,
                   discard_status_if: Optional[Callable[[], bool]] = None,
                   completion_is_valid: Optional[Callable[[bool], bool]] = None) -> PhaseRunResult:
        """Runs the unmarked phases in order under the setup lock, marking
        each right after its action returns. Markers already present are
        skipped (without locking when all are present, unless
        ``strict_marker_locking``). ``should_cancel`` is asked while waiting
        (:class:`PhaseLockCancelled`); ``discard_status_if()`` runs under the
        lock and, if true, drops the status markers; ``completion_is_valid``
        (False before locking, True under the lock) can declare present
        markers stale so the phases rerun."""
        plist = tuple(phases)
        for p in plist:
            _validate_phase_name(p.name)
        if not plist:
            return PhaseRunResult((), (), self.xattrs_available, self.lock_path, ())
        if (discard_status_if is None and not self.strict_marker_locking and self._all_marked(plist)
                and (completion_is_valid is None or completion_is_valid(False))):
            return self._result(plist, (), (p.name for p in plist))

        def cancelled() -> bool:
            if should_cancel is None:
                return False
            try:
                return bool(should_cancel())
            except Exception:
                return False

        lock = _AdvisoryLock(self.lock_path, timeout=self.timeout, retry_delay=self.retry_delay)
        acquired = lock.acquire(should_stop_waiting=cancelled if should_cancel is not None else None,
                                diagnostics=lambda: self._phase_diagnostics(plist))
        if not acquired or cancelled():
            lock.release()
            raise PhaseLockCancelled(f"Cancelled while waiting for phase lock: {self.lock_path}")
        completed: List[str] = []
        skipped: List[str] = []
        try:
            discard = bool(discard_status_if is not None and discard_status_if())
            if discard:
                self.discard_status_markers()
            status = set() if discard else self._read_status_entries()[1]
            rerun = bool(completion_is_valid is not None and all(self._is_marked(p, status) for p in plist)
                         and not completion_is_valid(True))
            using = self._should_use_xattrs()
            for p in plist:
                if discard:  # the status markers were declared stale; xattrs still count
                    marked = using and self._has_xattr_marker(p.name, p.attr_name)
                else:
                    marked = self._is_marked(p, status)
                if marked and not rerun:
                    skipped.append(p.name)
                    continue
                p.action()
                if not (using and self.mark_phase(p.name, attr_name=p.attr_name, value=p.attr_value)):
                    self._mark_status_phase(p.name)
                status.add(p.name)
                completed.append(p.name)
        finally:
            lock.release()
        return self._result(plist, completed, skipped)

    def _phase_diagnostics(self, phases: Tuple[Phase, ...]) -> str:
        order, status = self._read_status_entries()
        marked = [p.name for p in phases if self._is_marked(p, status)]
        missing = [p.name for p in phases if p.name not in marked]
        return "; ".join([
            f"target={self.target}",
            f"target_exists={self.target.exists()}",
            f"xattrs_available={self.xattrs_available}",
            f"status_path={self.status_base_path}",
            f"status_exists={self.status_base_path.exists()}",
            f"status_phases={order}",
            f"marked={marked}",
            f"missing={missing}",
        ])
