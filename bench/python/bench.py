"""Python-side benchmarks of the holdfast wheel beside the Python peers,
in one run: uncontended acquire+release, and handoff latency between two
processes. Prints a markdown table with ratios to the raw fcntl.flock
anchor. Run through bench/python/run (it builds and installs the wheel).

    python bench.py [--quick]
"""

from __future__ import annotations

import fcntl
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUICK = "--quick" in sys.argv


def per_op(fn, n: int, repeats: int) -> float:
    """Median over `repeats` runs of the mean time per call of fn(n) (s)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def uncontended(d: str) -> list:
    import holdfast

    rows = []
    p = os.path.join(d, "u.lock")

    def raw(n):
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        flock = fcntl.flock
        for _ in range(n):
            flock(fd, fcntl.LOCK_EX)
            flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    rows.append(("raw fcntl.flock pair (anchor)", raw))

    def hf(record):
        lock = holdfast.Lock(p, record=record)

        def run(n):
            for _ in range(n):
                with lock:
                    pass

        return run

    rows.append(("holdfast.Lock (default: holder record, fencing token)", hf(True)))
    rows.append(("holdfast.Lock(record=False)", hf(False)))

    def hf_acquire(n):
        lock = holdfast.Lock(p, record=False)
        for _ in range(n):
            lock.acquire()
            lock.release()

    rows.append(("holdfast.Lock(record=False) acquire()/release()", hf_acquire))

    try:
        import filelock

        def fl(n):
            lock = filelock.FileLock(p)
            for _ in range(n):
                with lock:
                    pass

        rows.append(("filelock.FileLock", fl))
    except ImportError:
        pass
    try:
        import fasteners

        def fa(n):
            lock = fasteners.InterProcessLock(p)
            for _ in range(n):
                with lock:
                    pass

        rows.append(("fasteners.InterProcessLock (fcntl)", fa))
    except ImportError:
        pass
    try:
        import portalocker

        def po(n):
            lock = portalocker.Lock(p, mode="a", flags=portalocker.LOCK_EX)
            for _ in range(n):
                with lock:
                    pass

        rows.append(("portalocker.Lock", po))
    except ImportError:
        pass

    n = 2000 if QUICK else 20000
    out = []
    for name, fn in rows:
        fn(200)  # warm up
        out.append((name, per_op(fn, n, 3 if QUICK else 7)))
    return out


# One handoff round: the holder takes the lock, tells the waiter to wait,
# lets it block, then releases with a timestamp; the waiter reports when
# it got the lock (CLOCK_MONOTONIC is system-wide).
HANDOFF_WAITER = r"""
import fcntl, os, sys, time
kind, path = sys.argv[1], sys.argv[2]
if kind == "raw":
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    acquire = lambda: fcntl.flock(fd, fcntl.LOCK_EX)
    release = lambda: fcntl.flock(fd, fcntl.LOCK_UN)
elif kind.startswith("holdfast"):
    import holdfast
    lock = holdfast.Lock(path, record=(kind != "holdfast-norecord"))
    acquire, release = lock.acquire, lock.release
elif kind == "filelock":
    import filelock
    lock = filelock.FileLock(path)
    acquire, release = lock.acquire, lock.release
def loop():
    for line in sys.stdin:
        acquire()
        t = time.monotonic_ns()
        release()
        print(t, flush=True)
if kind == "holdfast-thread":
    import threading
    t = threading.Thread(target=loop)
    t.start()
    t.join()
else:
    loop()
"""


def handoff(d: str, kind: str, rounds: int) -> list:
    p = os.path.join(d, f"h-{kind}.lock")
    w = subprocess.Popen([sys.executable, "-c", HANDOFF_WAITER, kind, p], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    if kind == "raw":
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        acquire = lambda: fcntl.flock(fd, fcntl.LOCK_EX)  # noqa: E731
        release = lambda: fcntl.flock(fd, fcntl.LOCK_UN)  # noqa: E731
    elif kind.startswith("holdfast"):
        import holdfast

        lock = holdfast.Lock(p, record=(kind != "holdfast-norecord"))
        acquire, release = lock.acquire, lock.release
    else:
        import filelock

        lock = filelock.FileLock(p)
        acquire, release = lock.acquire, lock.release
    lat = []
    for _ in range(rounds):
        acquire()
        w.stdin.write("go\n")
        w.stdin.flush()
        time.sleep(0.003)  # let the waiter block (a benchmark, not a test)
        t0 = time.monotonic_ns()
        release()
        t1 = int(w.stdout.readline())
        lat.append((t1 - t0) / 1e9)
    w.stdin.close()
    w.wait(30)
    lat.sort()
    return lat


def fmt(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.2f} µs"


def main() -> None:
    import holdfast

    print(f"Python {sys.version.split()[0]}, holdfast {holdfast.__version__}, load average {os.getloadavg()[0]:.1f}")
    print()
    with tempfile.TemporaryDirectory() as d:
        res = uncontended(d)
        anchor = res[0][1]
        print("### Python: uncontended acquire + release (same process, same file)")
        print()
        print("| implementation | per acquire+release | ratio vs raw fcntl.flock |")
        print("|---|---|---|")
        for name, t in res:
            print(f"| {name} | {fmt(t)} | {t / anchor:.2f}× |")
        print()
        print("### Python: handoff latency between two processes (release → waiter running)")
        print()
        print("| implementation | rounds | p50 | p99 | p50 vs raw fcntl.flock |")
        print("|---|---|---|---|---|")
        base = None
        for kind, name, rounds in [
            ("raw", "raw fcntl.flock (anchor)", 300),
            ("holdfast", "holdfast.Lock (waiter in the main thread)", 300),
            ("holdfast-norecord", "holdfast.Lock(record=False), waiter in the main thread", 300),
            ("holdfast-thread", "holdfast.Lock, waiter in a worker thread", 300),
            ("filelock", "filelock.FileLock", 40),
        ]:
            if QUICK:
                rounds = max(10, rounds // 10)
            lat = handoff(d, kind, rounds)
            p50 = lat[len(lat) // 2]
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            base = base or p50
            print(f"| {name} | {rounds} | {fmt(p50)} | {fmt(p99)} | {p50 / base:.2f}× |")


if __name__ == "__main__":
    main()
