"""Python filelock worker for holdfast-bench (same protocol as src/workers.rs).

Usage: filelock_worker.py IMPL ROLE LOCK ARG, ROLE one of loop, handoff,
uncontended (ARG: milliseconds per batch; five batches, each printed as
"mean NS" per acquire + release), IMPL one of:
  filelock        filelock.FileLock (flock, polls every 50 ms by default)
  filelock-soft   filelock.SoftFileLock
  flufl           flufl.lock.Lock (link() protocol)
  lockfile-link   lockfile.LinkLockFile
  lockfile-mkdir  lockfile.MkdirLockFile
"""
import os
import sys
import time


def make(impl, path):
    if impl == "filelock":
        from filelock import FileLock
        lock = FileLock(path)
        return lock.acquire, lock.release
    if impl == "filelock-soft":
        from filelock import SoftFileLock
        lock = SoftFileLock(path)
        return lock.acquire, lock.release
    if impl == "flufl":
        from datetime import timedelta
        from flufl.lock import Lock
        lock = Lock(path, lifetime=timedelta(seconds=60))
        return lock.lock, lock.unlock
    if impl in ("lockfile-link", "lockfile-mkdir"):
        # The classes live in submodules; the package only re-exports
        # LockFile (= LinkLockFile) and deprecated factories.
        from lockfile.linklockfile import LinkLockFile
        from lockfile.mkdirlockfile import MkdirLockFile
        cls = LinkLockFile if impl == "lockfile-link" else MkdirLockFile
        base = path[:-5] if path.endswith(".lock") else path
        lock = cls(base)
        return lock.acquire, lock.release
    raise SystemExit(f"unknown implementation {impl}")


def main():
    impl, role, path, arg = sys.argv[1:5]
    acquire, release = make(impl, path)
    if role == "loop":
        dur = int(arg) / 1000.0
        print("ready", flush=True)
        sys.stdin.readline()
        n = 0
        end = time.monotonic() + dur
        while time.monotonic() < end:
            acquire()
            release()
            n += 1
        print(f"count {n}", flush=True)
    elif role == "handoff":
        fd = os.open(arg, os.O_RDONLY)
        for _ in sys.stdin:
            print("trying", flush=True)
            acquire()
            t1 = time.monotonic_ns()
            t0 = int.from_bytes(os.pread(fd, 8, 0), "little")
            print(f"lat {t1 - t0}", flush=True)
            release()
    elif role == "uncontended":
        # ARG = milliseconds per batch; prints the mean cycle of 5 batches.
        dur = int(arg) * 1_000_000
        acquire()
        release()
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(5):
            n = 0
            t0 = time.perf_counter_ns()
            while True:
                acquire()
                release()
                n += 1
                if n % 16 == 0 and time.perf_counter_ns() - t0 >= dur:
                    break
            print(f"mean {(time.perf_counter_ns() - t0) // n}", flush=True)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
