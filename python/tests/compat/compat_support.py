"""Helpers and fixtures for the compat tests: the original library and
holdfast's compat module side by side (``impl`` is "original" or "compat"),
and child processes synchronised by lines on pipes with bounded waits.

Each test module imports what it uses from here; a ``conftest.py`` in this
directory would clash with ``python/tests/conftest.py`` (pytest imports both
as the module ``conftest``)."""

from __future__ import annotations

import importlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "peer_worker.py")

#: Every wait in these tests is bounded by this (seconds).
BOUND = 30.0


def require_peers() -> bool:
    """In the interop venv (scripts/test sets HOLDFAST_REQUIRE_INTEROP=1) a missing original is a failure, not a skip."""
    return "1" in (os.environ.get("HOLDFAST_REQUIRE_INTEROP"), os.environ.get("HOLDFAST_REQUIRE_PEERS"))


def load(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if require_peers():
            raise
        pytest.skip(f"{name} is not installed ({err}); run in the venv scripts/python-venv makes")


def pair(original: str, compat: str) -> Any:
    """A fixture factory: the module for the test's ``impl``."""

    @pytest.fixture(params=["original", "compat"])
    def fixture(request: Any) -> Any:
        request.node.impl = request.param
        return load(original if request.param == "original" else compat)

    return fixture


class Child:
    """A Python child process; talks by lines on stdout, listens on stdin."""

    def __init__(self, *argv: str, env: Any = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.pid = self.proc.pid

    @classmethod
    def worker(cls, *args: str, env: Any = None) -> "Child":
        return cls(WORKER, *args, env=env)

    def expect(self, want: str, timeout: float = BOUND) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen: List[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child {self.pid}: no line {want!r} within {timeout}s; saw {seen}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait(BOUND)
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"child {self.pid} exited (rc={rc}) before {want!r}; saw {seen}; stderr: {err}")
            line = line.rstrip("\n")
            if line.startswith(want):
                return line
            seen.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = BOUND) -> int:
        return self.proc.wait(timeout)

    def result(self, timeout: float = BOUND) -> str:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"child {self.pid} rc={self.proc.returncode}: {out} {err}"
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(BOUND)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=BOUND)
        except ValueError:
            pass


@pytest.fixture
def children() -> Any:
    made: List[Child] = []

    class Factory:
        def worker(self, *args: str, env: Any = None) -> Child:
            c = Child.worker(*args, env=env)
            made.append(c)
            return c

        def python(self, code: str, *args: str, env: Any = None) -> Child:
            c = Child("-c", code, *args, env=env)
            made.append(c)
            return c

    yield Factory()
    for c in made:
        c.close()


def counting_run(children: Any, lib_a: str, impl_a: str, lib_b: str, impl_b: str, path: str, tmp: str,
                 n: int = 40, procs_each: int = 2) -> None:
    """Processes of both sides increment one counter under the lock on
    ``path``; the final count proves no update was lost, the O_EXCL marker
    that nobody was inside at the same time."""
    counter = os.path.join(tmp, "counter")
    with open(counter, "w") as f:
        f.write("0")
    cs = []
    for _ in range(procs_each):
        cs.append(children.worker(lib_a, impl_a, "count", path, counter, str(n)))
        cs.append(children.worker(lib_b, impl_b, "count", path, counter, str(n)))
    for c in cs:
        out = c.result()
        assert "done" in out, out
    with open(counter) as f:
        assert int(f.read()) == n * len(cs)


def original_bug(request: Any, reason: str, *, racy: bool = False) -> None:
    """Marks this test, when run against the original, as pinning one of
    its documented bugs: it must fail there (strict xfail; ``racy``: a race
    of the original that only shows in some runs) and pass on the compat
    module."""
    if getattr(request.node, "impl", None) == "original":
        request.applymarker(pytest.mark.xfail(strict=not racy, reason=f"original's documented bug: {reason}"))


FLOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""
