"""Python phaselock 1.1.0 peer for holdfast's phase interop tests.

Usage:
  phaselock_peer.py run TARGET --phases a,b,c [--log LOG] [--barrier]
                    [--work-ms N] [--timeout S] [--attr NAME=ATTR:VALUE]...
  phaselock_peer.py hold TARGET
  phaselock_peer.py value TARGET NAME

run:   runs the phases with PhaseLockService(TARGET) (mode from the
       PHASELOCK_ENABLE_XATTRS environment variable, as the library reads
       it). Each action sleeps --work-ms, then appends "<name> py pid=<pid>"
       to LOG and fsyncs it. With --barrier it prints "ready" and waits for a
       line on stdin before starting. Prints one line
       "report completed=a,b skipped=c xattrs=1" or "timeout: MESSAGE"
       (exit 11).
hold:  holds the service's lock (PhaseLockService.locked()), prints
       "locked pid=<pid>", and releases when stdin closes.
value: prints the phase's xattr value via get_xattr_value (or "none").
"""

import os
import sys
import time

from phaselock import Phase, PhaseLockService, PhaseLockTimeout


def append(log, line):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv):
    cmd, target = argv[0], argv[1]
    if cmd == "value":
        v = PhaseLockService(target).get_xattr_value(argv[2])
        print("none" if v is None else v.decode(), flush=True)
        return 0
    opts = {"--phases": "", "--log": None, "--work-ms": "0", "--timeout": "10"}
    attrs = {}
    flags = set()
    i = 2
    while i < len(argv):
        a = argv[i]
        if a == "--barrier":
            flags.add(a)
            i += 1
        elif a == "--attr":
            name, rest = argv[i + 1].split("=", 1)
            attr, value = rest.split(":", 1)
            attrs[name] = (attr, value.encode())
            i += 2
        else:
            opts[a] = argv[i + 1]
            i += 2

    service = PhaseLockService(target, timeout=float(opts["--timeout"]))
    if cmd == "hold":
        with service.locked():
            print(f"locked pid={os.getpid()}", flush=True)
            sys.stdin.read()
        return 0
    work = int(opts["--work-ms"]) / 1000.0

    def action(name):
        def run():
            if work:
                time.sleep(work)
            if opts["--log"]:
                append(opts["--log"], f"{name} py pid={os.getpid()}")
        return run

    phases = []
    for name in [p for p in opts["--phases"].split(",") if p]:
        attr, value = attrs.get(name, (None, b"1"))
        phases.append(Phase(name, action(name), attr_name=attr, attr_value=value))

    if "--barrier" in flags:
        print("ready", flush=True)
        sys.stdin.readline()
    try:
        result = service.run_phases(phases)
    except PhaseLockTimeout as e:
        print(f"timeout: {e}", flush=True)
        return 11
    print(
        "report completed={} skipped={} xattrs={}".format(
            ",".join(result.completed),
            ",".join(result.skipped),
            int(result.xattrs_available),
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
