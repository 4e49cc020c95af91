"""Helpers for the holdfast Python tests: child processes synchronised by
line-based pipes with bounded waits (never bare sleeps)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from typing import List, Optional

import pytest

#: Every wait in these tests is bounded by this (seconds).
BOUND = 20.0


class Child:
    """A Python child process running `code`; it talks by lines on
    stdout and listens on stdin."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid

    def expect(self, want: str, timeout: float = BOUND) -> str:
        """Waits (bounded) for a line starting with `want`; returns it."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen: List[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child {self.pid}: no line {want!r} within {timeout}s; saw {seen}; stderr: {self.stderr()}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"child {self.pid} exited (rc={self.proc.wait()}) before {want!r}; saw {seen}; stderr: {self.stderr()}")
            line = line.rstrip("\n")
            if line.startswith(want):
                return line
            seen.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()

    def wait(self, timeout: float = BOUND) -> int:
        return self.proc.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(BOUND)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def child():
    made: List[Child] = []

    def spawn(code: str, *args: str) -> Child:
        c = Child(code, *args)
        made.append(c)
        return c

    yield spawn
    for c in made:
        c.close()


#: A child that holds `holdfast.Lock(argv[1])` until told to release it.
HOLDER = """
import sys, holdfast
lock = holdfast.Lock(sys.argv[1])
lock.acquire()
print("locked", lock.token, flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


def run_all(procs: List[subprocess.Popen], timeout: float = 60.0) -> None:
    """Waits (bounded) for every process; all must exit 0."""
    deadline = time.monotonic() + timeout
    for p in procs:
        left = max(0.1, deadline - time.monotonic())
        try:
            rc = p.wait(left)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"worker {p.pid} did not finish within {timeout}s")
        err = p.stderr.read() if p.stderr else ""
        assert rc == 0, f"worker {p.pid} exited {rc}: {err}"


def spawn_worker(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def has_module(name: str) -> Optional[object]:
    try:
        return __import__(name)
    except ImportError:
        if os.environ.get("HOLDFAST_REQUIRE_INTEROP"):
            raise
        return None
