"""stouputils LockFifo worker for holdfast-bench (Python >= 3.12), speaking
the protocol of bench/src/fifo.rs:

  stouputils_worker.py lockfifo loop LOCK MILLIS[:WORK_US]
      print "ready", wait for a line, lock/unlock in a loop for MILLIS;
      print "count N half H" (H = acquisitions in the first half)
  stouputils_worker.py lockfifo handoff LOCK T0FILE
      for every line: print "trying", acquire, read the releaser's
      CLOCK_MONOTONIC stamp from T0FILE, print "lat NANOS", release

LockFifo is used with its defaults (FIFO on, 50 ms poll interval).
"""
import os
import sys
import time

from stouputils.lock import LockFifo


def main() -> None:
    impl, role, path, arg = sys.argv[1:5]
    if impl != "lockfifo":
        raise SystemExit(f"unknown implementation {impl}")
    lock = LockFifo(path)
    if role == "loop":
        dur = int(arg.split(":")[0]) / 1000.0
        print("ready", flush=True)
        sys.stdin.readline()
        n, half = 0, None
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if half is None and now - start >= dur / 2:
                half = n
            if now - start >= dur:
                break
            lock.acquire()
            lock.release()
            n += 1
        print(f"count {n} half {half if half is not None else n}", flush=True)
    elif role == "handoff":
        fd = os.open(arg, os.O_RDONLY)
        for _ in sys.stdin:
            print("trying", flush=True)
            lock.acquire()
            t1 = time.monotonic_ns()
            t0 = int.from_bytes(os.pread(fd, 8, 0), "little")
            print(f"lat {t1 - t0}", flush=True)
            lock.release()
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
