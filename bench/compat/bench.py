"""Each holdfast compat module beside its original, in one run.

For every library: uncontended acquire+release in one process; handoff
latency (the holder releases, how long until a waiting process runs);
8 processes contending for a fixed time (acquisitions per second); and
fairness among those 8 (Jain's index, 1.0 = perfectly even, and the
max/min ratio of their acquisition counts). Ratios are compat / original:
below 1 is faster for times, above 1 is more for throughput.

    python bench.py [--quick] [LIB...]

Both sides go through the same adapter (python/tests/compat/peer_worker.py),
so the numbers compare the libraries, not the harness.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_DIR = os.path.join(HERE, "..", "..", "python", "tests", "compat")
sys.path.insert(0, WORKER_DIR)

from peer_worker import make  # noqa: E402

QUICK = "--quick" in sys.argv
LIBS = [a for a in sys.argv[1:] if not a.startswith("-")] or [
    "filelock", "filelock-soft", "phaselock", "flufl", "lockfile-link", "lockfile-mkdir", "lockfile-pid",
    "stouputils",
]
NAMES = {
    "filelock": "filelock.FileLock",
    "filelock-soft": "filelock.SoftFileLock",
    "phaselock": "phaselock.AdvisoryFileLock",
    "flufl": "flufl.lock.Lock",
    "lockfile-link": "lockfile.LinkLockFile",
    "lockfile-mkdir": "lockfile.MkdirLockFile",
    "lockfile-pid": "lockfile.PIDLockFile",
    "stouputils": "stouputils LockFifo",
}
BUDGET = 1.0 if QUICK else 3.0  # seconds per measurement for the slow (polling) ones
PROCS = 8


def uncontended(lib: str, impl: str, d: str) -> float:
    acquire, release = make(lib, impl, os.path.join(d, f"u-{lib}-{impl}"))
    acquire(-1)
    release()
    times = []
    n = 0
    end = time.perf_counter() + BUDGET
    while time.perf_counter() < end or n < 20:
        t = time.perf_counter()
        acquire(-1)
        release()
        times.append(time.perf_counter() - t)
        n += 1
    return statistics.median(times)


HANDOFF_WAITER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from peer_worker import make
acquire, release = make(sys.argv[2], sys.argv[3], sys.argv[4])
print("ready", flush=True)
for line in sys.stdin:
    acquire(-1)
    t = time.monotonic_ns()
    release()
    print(t, flush=True)
"""


def handoff(lib: str, impl: str, d: str) -> tuple:
    path = os.path.join(d, f"h-{lib}-{impl}")
    w = subprocess.Popen([sys.executable, "-c", HANDOFF_WAITER, WORKER_DIR, lib, impl, path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert w.stdout.readline().strip() == "ready"
    acquire, release = make(lib, impl, path)
    lat = []
    end = time.monotonic() + BUDGET * 2
    while (time.monotonic() < end and len(lat) < 300) or len(lat) < 5:
        acquire(-1)
        w.stdin.write("go\n")
        w.stdin.flush()
        time.sleep(0.005)  # let the waiter block (a benchmark, not a test)
        t0 = time.monotonic_ns()
        release()
        t1 = int(w.stdout.readline())
        lat.append((t1 - t0) / 1e9)
    w.stdin.close()
    w.wait(60)
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0], len(lat)


CONTENDER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from peer_worker import make
acquire, release = make(sys.argv[2], sys.argv[3], sys.argv[4])
duration = float(sys.argv[5])
print("ready", flush=True)
sys.stdin.readline()
n = 0
end = time.monotonic() + duration
while time.monotonic() < end:
    acquire(-1)
    n += 1
    release()
print(n, flush=True)
"""


def contended(lib: str, impl: str, d: str) -> tuple:
    path = os.path.join(d, f"c-{lib}-{impl}")
    ps = [subprocess.Popen([sys.executable, "-c", CONTENDER, WORKER_DIR, lib, impl, path, str(BUDGET)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
          for _ in range(PROCS)]
    for p in ps:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    for p in ps:
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.stdout.readline()) for p in ps]
    wall = time.monotonic() - t0
    for p in ps:
        p.wait(60)
    total = sum(counts)
    jain = total * total / (len(counts) * sum(c * c for c in counts)) if total else 0.0
    spread = (max(counts) / min(counts)) if min(counts) else float("inf")
    return total / wall, jain, spread, counts


def fmt(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def main() -> None:
    import holdfast

    print(f"Python {sys.version.split()[0]}, holdfast {holdfast.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, {PROCS} contenders, "
          f"{BUDGET:.0f} s per timed run")
    print()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for lib in LIBS:
            r = {}
            for impl in ("original", "compat"):
                r[impl] = (uncontended(lib, impl, d), handoff(lib, impl, d), contended(lib, impl, d))
            rows.append((lib, r))
            o, c = r["original"], r["compat"]
            print(f"{lib}: uncontended {fmt(o[0])} -> {fmt(c[0])}; handoff p50 {fmt(o[1][0])} -> {fmt(c[1][0])}; "
                  f"contended {o[2][0]:.0f}/s -> {c[2][0]:.0f}/s; Jain {o[2][1]:.2f} -> {c[2][1]:.2f}",
                  file=sys.stderr)
    print("### Uncontended acquire + release (one process; median)")
    print()
    print("| original | original | holdfast.compat | compat / original |")
    print("|---|---|---|---|")
    for lib, r in rows:
        o, c = r["original"][0], r["compat"][0]
        print(f"| {NAMES[lib]} | {fmt(o)} | {fmt(c)} | {c / o:.2f}× |")
    print()
    print("### Handoff: holder releases → waiting process runs")
    print()
    print("| original | original p50 (p99) | holdfast.compat p50 (p99) | p50 compat / original |")
    print("|---|---|---|---|")
    for lib, r in rows:
        o, c = r["original"][1], r["compat"][1]
        print(f"| {NAMES[lib]} | {fmt(o[0])} ({fmt(o[1])}, n={o[2]}) | {fmt(c[0])} ({fmt(c[1])}, n={c[2]}) | "
              f"{c[0] / o[0]:.3f}× |")
    print()
    print(f"### Contended: {PROCS} processes, {BUDGET:.0f} s, acquisitions per second and fairness")
    print()
    print("| original | original acq/s | compat acq/s | compat / original | Jain original → compat | "
          "max/min count original → compat |")
    print("|---|---|---|---|---|---|")
    for lib, r in rows:
        o, c = r["original"][2], r["compat"][2]
        ratio = c[0] / o[0] if o[0] else float("inf")
        print(f"| {NAMES[lib]} | {o[0]:.0f} | {c[0]:.0f} | {ratio:.2f}× | {o[1]:.2f} → {c[1]:.2f} | "
              f"{o[2]:.1f} → {c[2]:.1f} |")


if __name__ == "__main__":
    main()
