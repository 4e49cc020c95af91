"""Python phaselock 1.1.0 worker for holdfast-bench's phase scenario.

Usage: phaselock_worker.py IMPL TARGET N MILLIS, IMPL one of:
  phaselock          PhaseLockService(TARGET).run_phases (POSIX fast path)
  phaselock-strict   the same with strict_marker_locking=True

N phases named s000, s001, ... must already be marked done on TARGET
(the harness marks them). Prints "ready", waits for a line, then loops
run_phases for MILLIS (at least 20 times) and prints "ns MEAN" (mean
nanoseconds per run). The store follows PHASELOCK_ENABLE_XATTRS, which
phaselock reads itself. Same protocol as bench/src/phases.rs.
"""
import sys
import time

from phaselock import Phase, PhaseLockService


def never():
    raise AssertionError("every phase is already done")


def main():
    impl, target, n, millis = sys.argv[1:5]
    if impl not in ("phaselock", "phaselock-strict"):
        raise SystemExit(f"unknown implementation {impl}")
    service = PhaseLockService(target, strict_marker_locking=impl == "phaselock-strict")
    phases = [Phase(f"s{i:03}", never) for i in range(int(n))]

    def one():
        result = service.run_phases(phases)
        assert len(result.skipped) == len(phases), result

    for _ in range(20):  # warm up, and check everything is skipped
        one()
    print("ready", flush=True)
    sys.stdin.readline()
    duration = int(millis) / 1000.0
    iters = 0
    start = time.perf_counter_ns()
    while True:
        one()
        iters += 1
        elapsed = time.perf_counter_ns() - start
        if elapsed >= duration * 1e9 and iters >= 20:
            break
    print(f"ns {elapsed // iters}", flush=True)


if __name__ == "__main__":
    main()
