"""Stubs of the private native module (crates/holdfast-py). Use the public
API in ``holdfast`` instead; these signatures may change."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__version__: str

_Callback = Callable[[bool, Any], None]

def cli_main(argv: List[str]) -> int: ...
def status(path: bytes) -> Dict[str, Any]: ...
def inspect(path: bytes) -> Dict[str, Any]: ...
def once(
    key: bytes,
    action: Callable[[Dict[str, Any]], Any],
    *,
    timeout: Optional[float],
    blocking: bool,
    on_leader_failure: str,
    interruptible: bool,
) -> Dict[str, Any]: ...
def after_fork_in_child() -> None: ...

class AsyncAcquisition:
    def cancel(self) -> bool: ...

class LockHandle:
    held: bool
    token: Optional[int]
    mode: str
    def release(self) -> None: ...
    def fileno(self) -> int: ...
    def upgrade(self, timeout: Optional[float], blocking: bool) -> None: ...
    def downgrade(self) -> None: ...

class NativeLock:
    path: bytes
    def __init__(
        self,
        path: bytes,
        *,
        backend: str,
        record: bool,
        create_parents: bool,
        follow_symlinks: bool,
        mode: int,
    ) -> None: ...
    def acquire(self, shared: bool, timeout: Optional[float], blocking: bool, interruptible: bool) -> LockHandle: ...
    def acquire_async(
        self, shared: bool, timeout: Optional[float], blocking: bool, callback: _Callback
    ) -> Union[LockHandle, AsyncAcquisition]: ...
    def holders(self) -> List[Dict[str, Any]]: ...

class LockFileHandle:
    held: bool
    def release(self) -> None: ...
    def refresh(self) -> None: ...
    def check(self) -> None: ...

class NativeLockFile:
    path: bytes
    lifetime: Optional[float]
    def __init__(
        self,
        path: bytes,
        *,
        protocol: str,
        compat: Optional[str],
        lifetime: Optional[float],
        heartbeat: Optional[bool],
        create_parents: bool,
        mode: int,
    ) -> None: ...
    def acquire(self, timeout: Optional[float], blocking: bool, interruptible: bool) -> LockFileHandle: ...
    def acquire_async(
        self, timeout: Optional[float], blocking: bool, callback: _Callback
    ) -> Union[LockFileHandle, AsyncAcquisition]: ...
    def is_locked(self) -> bool: ...
    def i_am_locking(self) -> bool: ...
    def break_lock(self, force: bool = ...) -> bool: ...
    def refresh(self) -> None: ...
    def status(self) -> Dict[str, Any]: ...

class FifoHandle:
    held: bool
    token: Optional[int]
    ticket: int
    mode: str
    def release(self) -> None: ...

class NativeFifoLock:
    path: bytes
    def __init__(
        self,
        path: bytes,
        *,
        backend: str,
        record: bool,
        create_parents: bool,
        follow_symlinks: bool,
        mode: int,
        queue_path: Optional[bytes],
        remove_queue_when_idle: bool,
    ) -> None: ...
    def acquire(self, shared: bool, timeout: Optional[float], blocking: bool) -> FifoHandle: ...
    def acquire_async(
        self, shared: bool, timeout: Optional[float], blocking: bool, callback: _Callback
    ) -> Union[FifoHandle, AsyncAcquisition]: ...
    def queue_len(self) -> int: ...
    def holders(self) -> List[Dict[str, Any]]: ...

class PermitHandle:
    held: bool
    slot: int
    def release(self) -> None: ...

class NativeSemaphore:
    path: bytes
    permits: int
    def __init__(self, path: bytes, permits: int, *, create_parents: bool, mode: int, remove_when_idle: bool) -> None: ...
    def acquire(self, timeout: Optional[float], blocking: bool) -> PermitHandle: ...
    def acquire_async(
        self, timeout: Optional[float], blocking: bool, callback: _Callback
    ) -> Union[PermitHandle, AsyncAcquisition]: ...
    def available(self) -> int: ...
    def holders(self) -> List[Dict[str, Any]]: ...

class NativePhaseRunner:
    lock_path: bytes
    status_path: bytes
    def __init__(
        self,
        target: bytes,
        *,
        namespace: Optional[str],
        lock_suffix: Optional[bytes],
        status_suffix: Optional[bytes],
        timeout: Optional[float],
        blocking: bool,
        xattrs: str,
        strict: bool,
        follow_symlinks: bool,
        lock_mode: int,
    ) -> None: ...
    def attr_key(self, name: str) -> str: ...
    def run(self, phases: List[Tuple[str, Callable[[Dict[str, Any]], Any], Optional[str], bytes]], interruptible: bool) -> Dict[str, Any]: ...
    def is_marked(self, name: str, attr_name: Optional[str] = ...) -> Optional[str]: ...
    def unmark(self, name: str, attr_name: Optional[str] = ...) -> bool: ...
    def reset(self) -> List[str]: ...
    def markers(self) -> List[str]: ...
