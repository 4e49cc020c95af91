"""stouputils LockFifo as a peer of holdfast's FIFO tests (Python >= 3.12).

    hold PATH           acquire LockFifo(PATH), print "locked", wait for a
                        line or EOF on stdin, release and close (close()
                        deletes the lock file when it is free), print
                        "released"
    try PATH SECONDS    one acquire with that timeout: print "acquired" or
                        "timeout"
"""
import sys

from stouputils.lock import LockFifo, LockTimeoutError


def main() -> None:
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "hold":
        lock = LockFifo(path, timeout=None)
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.readline()
        lock.release()
        lock.close()
        print("released", flush=True)
    elif cmd == "try":
        lock = LockFifo(path, timeout=float(sys.argv[3]))
        try:
            lock.acquire()
        except LockTimeoutError:
            print("timeout", flush=True)
            return
        print("acquired", flush=True)
        lock.release()
        lock.close()
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
