"""A child process that locks a path with an original library or its
holdfast compat module, for the interop tests.

    python peer_worker.py LIB IMPL count PATH COUNTER N
        N times: lock, check nobody else is inside (an O_EXCL marker),
        increment the integer in COUNTER, unlock. Prints "done".
    python peer_worker.py LIB IMPL hold PATH
        lock, print "held", wait for a line on stdin, unlock, print "released".
    python peer_worker.py LIB IMPL try PATH SECONDS
        try to lock for SECONDS; prints "got" (and unlocks) or "busy".

LIB: filelock, filelock-soft, flufl, lockfile-link, lockfile-mkdir,
lockfile-pid, phaselock, libvcs, stouputils. IMPL: original | compat.
Exit status 3 means two holders were inside at once.
"""

from __future__ import annotations

import datetime
import importlib
import os
import sys
import time
from typing import Any, Callable, Tuple

ORIGINAL = {
    "filelock": "filelock",
    "phaselock": "phaselock",
    "flufl": "flufl.lock",
    "lockfile": "lockfile",
    "libvcs": "libvcs._internal.file_lock",
    "stouputils": "stouputils.lock",
}
COMPAT = {
    "filelock": "holdfast.compat.filelock",
    "phaselock": "holdfast.compat.phaselock",
    "flufl": "holdfast.compat.flufl_lock",
    "lockfile": "holdfast.compat.lockfile",
    "libvcs": "holdfast.compat.libvcs_file_lock",
    "stouputils": "holdfast.compat.stouputils_lock",
}


def module(lib: str, impl: str) -> Any:
    base = lib.split("-")[0]
    if base == "libvcs" and impl == "original":
        try:
            return importlib.import_module(ORIGINAL[base])
        except ImportError:
            return LibvcsProtocolPeer  # libvcs's file_lock is in no release: its protocol, modelled
    return importlib.import_module((ORIGINAL if impl == "original" else COMPAT)[base])


class LibvcsProtocolPeer:
    """libvcs's file_lock protocol as its description states it (peer-protocols.md section 4),
    for interop tests where libvcs's module cannot be installed: O_CREAT|O_EXCL on the exact
    path, the pid written without a newline, unlink on release; a lock whose mtime is older
    than stale_timeout (or that cannot be stat'ed) is deleted by a waiter; polls every 0.05 s."""

    class FileLockTimeout(TimeoutError):
        pass

    class FileLock:
        def __init__(self, path: str, timeout: float = -1.0, stale_timeout: float = 300.0) -> None:
            self.path, self.timeout = path, timeout
            self.stale_timeout = float(os.environ.get("HF_LIBVCS_STALE", stale_timeout))
            self.fd: Any = None

        def acquire(self, timeout: Any = None) -> None:
            t = self.timeout if timeout is None else timeout
            start = time.monotonic()
            while True:
                try:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    os.write(self.fd, str(os.getpid()).encode())
                    return
                except FileExistsError:
                    pass
                try:
                    stale = time.time() - os.stat(self.path).st_mtime > self.stale_timeout
                except OSError:
                    stale = True
                if stale:
                    try:
                        os.unlink(self.path)
                        continue
                    except OSError:
                        pass
                if t >= 0 and time.monotonic() - start >= t:
                    raise LibvcsProtocolPeer.FileLockTimeout(self.path)
                time.sleep(0.05)

        def release(self) -> None:
            os.close(self.fd)
            self.fd = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def make(lib: str, impl: str, path: str) -> Tuple[Callable[[float], bool], Callable[[], None]]:
    """(acquire(timeout) -> bool, release()) for LIB/IMPL on PATH. timeout < 0: forever."""
    m = module(lib, impl)
    if lib == "filelock":
        lk = m.FileLock(path)
        exc: Any = m.Timeout
    elif lib == "filelock-soft":
        lk = m.SoftFileLock(path)
        exc = m.Timeout
    elif lib in ("lockfile-link", "lockfile-mkdir", "lockfile-pid"):
        if lib == "lockfile-pid":
            lk = importlib.import_module(m.__name__ + ".pidlockfile").PIDLockFile(path)
        elif lib == "lockfile-mkdir":
            lk = importlib.import_module(m.__name__ + ".mkdirlockfile").MkdirLockFile(path)
        else:
            lk = importlib.import_module(m.__name__ + ".linklockfile").LinkLockFile(path)
        exc = m.LockError

        def acq(t: float) -> bool:
            while True:
                try:
                    lk.acquire(timeout=None if t < 0 else max(t, 0.01))
                    return True
                except m.AlreadyLocked:
                    # lockfile's PIDLockFile.acquire(timeout=None) gives up at the first
                    # busy try instead of waiting (its bug): retry, as its users must.
                    if t >= 0 or lib != "lockfile-pid" or impl != "original":
                        raise
                    time.sleep(0.1)
                except exc:
                    if t < 0:
                        raise  # waiting forever cannot time out: say what went wrong
                    return False

        return acq, lk.release
    elif lib == "flufl":
        life = int(os.environ.get("HF_FLUFL_LIFETIME", "60"))
        lk = m.Lock(path, lifetime=datetime.timedelta(seconds=life))

        def acq(t: float) -> bool:
            try:
                lk.lock(timeout=None if t < 0 else datetime.timedelta(seconds=t))
                return True
            except m.TimeOutError:
                return False

        return acq, lk.unlock
    elif lib == "phaselock":
        from pathlib import Path

        def acq(t: float) -> bool:
            nonlocal lk
            lk = m.AdvisoryFileLock(Path(path), timeout=1e9 if t < 0 else t, retry_delay=0.05)
            try:
                lk.acquire()
                return True
            except m.PhaseLockTimeout:
                return False

        lk = None
        return acq, lambda: lk.release()
    elif lib == "libvcs":
        lk = m.FileLock(path, stale_timeout=float(os.environ.get("HF_LIBVCS_STALE", "300")))
        exc = m.FileLockTimeout
    elif lib == "stouputils":
        lk = m.LockFifo(path)

        def acq(t: float) -> bool:
            try:
                lk.acquire(timeout=None if t < 0 else t)
                return True
            except m.LockTimeoutError:
                return False

        return acq, lk.release
    else:
        raise SystemExit(f"unknown lib {lib}")

    def acq(t: float) -> bool:
        try:
            lk.acquire(timeout=t)
            return True
        except exc:
            return False

    return acq, lk.release


def main() -> int:
    lib, impl, cmd, path = sys.argv[1:5]
    acquire, release = make(lib, impl, path)
    if cmd == "count":
        counter, n = sys.argv[5], int(sys.argv[6])
        inside = counter + ".inside"
        for _ in range(n):
            assert acquire(-1)
            try:
                fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                print("OVERLAP", flush=True)
                return 3
            with open(counter) as f:
                v = int(f.read() or 0)
            os.sched_yield()
            with open(counter, "w") as f:
                f.write(str(v + 1))
            os.close(fd)
            os.unlink(inside)
            release()
        print("done", flush=True)
        if lib == "stouputils":
            # stouputils' LockFifo.__del__ -> close() unlinks the lock file while processes of
            # the other side may still wait on it: a split lock that is stouputils' own bug
            # (peer-protocols.md section 6), not what this count measures. Leave without it.
            os._exit(0)
        return 0
    if cmd == "hold":
        assert acquire(-1)
        print("held", flush=True)
        sys.stdin.readline()
        release()
        print("released", flush=True)
        return 0
    if cmd == "try":
        if acquire(float(sys.argv[5])):
            print("got", flush=True)
            release()
        else:
            print("busy", flush=True)
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
