"""Python peers that lock a path with flock(2), for holdfast's interop tests.

Usage: kernel_lock_peer.py LIB PATH ACTION
  LIB     filelock | phaselock | portalocker
  ACTION  hold: take the lock, print "locked", hold until stdin closes,
                release, print "released";
          try:  one non-blocking attempt, print "acquired" or "busy".
"""
import sys
from pathlib import Path


def make(lib, path):
    """Returns (try_acquire, release) for the library's exclusive lock."""
    if lib == "filelock":
        import filelock

        lock = filelock.FileLock(path)

        def try_acquire():
            try:
                lock.acquire(timeout=0)
                return True
            except filelock.Timeout:
                return False

        return try_acquire, lock.release
    if lib == "phaselock":
        import phaselock

        lock = phaselock.AdvisoryFileLock(Path(path), timeout=0.0, retry_delay=0.01)

        def try_acquire():
            try:
                return bool(lock.acquire())
            except phaselock.PhaseLockTimeout:
                return False

        return try_acquire, lock.release
    if lib == "portalocker":
        import portalocker

        lock = portalocker.Lock(path, mode="a", timeout=0, fail_when_locked=True)

        def try_acquire():
            try:
                lock.acquire()
                return True
            except portalocker.exceptions.LockException:
                return False

        return try_acquire, lock.release
    raise SystemExit(f"unknown library {lib}")


def main():
    lib, path, action = sys.argv[1:4]
    try_acquire, release = make(lib, path)
    if action == "try":
        if try_acquire():
            print("acquired", flush=True)
            release()
        else:
            print("busy", flush=True)
    elif action == "hold":
        while not try_acquire():
            pass
        print("locked", flush=True)
        sys.stdin.read()
        release()
        print("released", flush=True)
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
