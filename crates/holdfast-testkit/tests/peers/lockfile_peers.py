"""Python peers for holdfast's lock-file interop tests (tests/testkit/lockfile.rs).

    python lockfile_peers.py LIB CMD PATH [ARGS...]

LIB is the real library under test:
  flufl           flufl.lock Lock(PATH, lifetime=...)
  lockfile-link   lockfile.linklockfile.LinkLockFile(PATH)
  lockfile-mkdir  lockfile.mkdirlockfile.MkdirLockFile(PATH)
  filelock        filelock.SoftFileLock(PATH)

CMD:
  count PATH COUNTER N   N times: acquire, run the critical section (the same
                         counter + overlap detector as holdfast-helper's), release;
                         prints "done violations=V"
  hold PATH              acquire, print "locked pid=P", wait for a stdin line or EOF,
                         release, print "released"
  try PATH SECONDS       try for SECONDS: prints "acquired" (and holds until stdin
                         closes) or "timeout"
  status PATH            print what the library itself says about the holder

Options (environment): PEER_LIFETIME (flufl lifetime seconds, default 15).
Polling is shortened where the library allows, without touching its on-disk
protocol: flufl.lock's `_sleep` hook (a documented override point) sleeps
5-15 ms instead of up to 2 s; lockfile polls timeout/10; filelock polls 5 ms.
"""

import datetime
import os
import random
import sys
import time


def make(lib, path):
    if lib == "flufl":
        from flufl.lock import Lock

        class FastLock(Lock):
            def _sleep(self):
                time.sleep(0.005 + random.random() * 0.01)

        lifetime = int(os.environ.get("PEER_LIFETIME", "15"))
        return FastLock(path, lifetime=lifetime)
    if lib == "lockfile-link":
        from lockfile.linklockfile import LinkLockFile

        return LinkLockFile(path)
    if lib == "lockfile-mkdir":
        from lockfile.mkdirlockfile import MkdirLockFile

        return MkdirLockFile(path)
    if lib == "filelock":
        from filelock import SoftFileLock

        return SoftFileLock(path, poll_interval=0.005)
    raise SystemExit(f"unknown library {lib}")


def acquire(lib, lock, seconds=None):
    """Blocks until acquired (True) or `seconds` pass (False)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    if lib == "flufl":
        from flufl.lock import TimeOutError

        try:
            lock.lock(timeout=None if seconds is None else datetime.timedelta(seconds=seconds))
            return True
        except TimeOutError:
            return False
    if lib.startswith("lockfile"):
        from lockfile import LockTimeout

        while True:
            try:
                lock.acquire(timeout=0.05)  # polls every 5 ms
                return True
            except LockTimeout:
                if deadline is not None and time.monotonic() > deadline:
                    return False
    if lib == "filelock":
        from filelock import Timeout

        try:
            lock.acquire(timeout=-1 if seconds is None else seconds)
            return True
        except Timeout:
            return False
    raise SystemExit(f"unknown library {lib}")


def release(lib, lock):
    if lib == "flufl":
        lock.unlock()
    else:
        lock.release()


def critical_section(counter):
    """Mirror of holdfast-helper's lock::critical_section: returns 1 if
    someone else was inside."""
    inside = os.path.splitext(counter)[0] + ".inside"
    violations = 0
    try:
        os.close(os.open(inside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        violations += 1
    try:
        with open(counter) as f:
            v = int(f.read().strip() or 0)
    except FileNotFoundError:
        v = 0
    with open(counter, "w") as f:
        f.write(str(v + 1))
    try:
        os.unlink(inside)
    except FileNotFoundError:
        pass
    return violations


def say(line):
    print(line, flush=True)


def main():
    lib, cmd, path = sys.argv[1], sys.argv[2], sys.argv[3]
    lock = make(lib, path)
    if cmd == "count":
        counter, n = sys.argv[4], int(sys.argv[5])
        violations = 0
        for _ in range(n):
            acquire(lib, lock)
            violations += critical_section(counter)
            release(lib, lock)
        say(f"done violations={violations}")
        sys.exit(0 if violations == 0 else 1)
    if cmd == "hold":
        acquire(lib, lock)
        say(f"locked pid={os.getpid()}")
        sys.stdin.readline()
        release(lib, lock)
        say("released")
        return
    if cmd == "try":
        if acquire(lib, lock, float(sys.argv[4])):
            say("acquired")
            sys.stdin.readline()
            release(lib, lock)
        else:
            say("timeout")
        return
    if cmd == "status":
        if lib == "flufl":
            from flufl.lock import NotLockedError

            try:
                host, pid, lockfile = lock.details
                say(f"details host={host} pid={pid} state={lock.state.name}")
            except NotLockedError:
                say(f"details none state={lock.state.name}")
        elif lib.startswith("lockfile"):
            say(f"is_locked={lock.is_locked()} i_am_locking={lock.i_am_locking()}")
        else:
            say(f"pid={lock.pid} held_by_us={lock.is_lock_held_by_us} locked={os.path.exists(path)}")
        return
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
